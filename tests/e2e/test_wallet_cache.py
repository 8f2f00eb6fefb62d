"""The wallet cache after a crash between a move's commit and its write-through (found
by the crash test of a batch in flight: all 200 transfers COMPLETED, the payer's balance
still shown as before, for as long as the cache keeps it). The move is asked again by
recovery with the same transaction id; that replay makes wallets forget the cached
states of the move's wallets, so the next read is the database's."""

from __future__ import annotations

import json
import uuid

import httpx
from redis.asyncio import Redis

from tests.conftest import Stack
from tests.e2e.helpers import internal_client, move_out
from tests.e2e.money import balance, funded_user


async def test_a_replayed_move_forgets_the_cached_states_a_crash_left_old(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth, src = await funded_user(api, "100.00")
    _, other_auth, dst = await funded_user(api, "0")
    assert await balance(api, auth, src["id"]) == "100.00"  # cached now
    redis = Redis.from_url(stack.infra.redis_url)
    key = f"wallet:{src['id']}"
    before = await redis.get(key)
    assert before is not None
    tx = str(uuid.uuid4())
    async with internal_client(stack) as wallets:
        moved = await move_out(wallets, src["id"], dst["id"], 1000, tx)
        assert moved.status_code == 200, moved.text
        # What a process killed after its commit and before its write-through leaves.
        await redis.set(key, before)
        assert await balance(api, auth, src["id"]) == "100.00"  # the old state, served
        # Recovery asks for the same move again: answered from its first outcome...
        again = await move_out(wallets, src["id"], dst["id"], 1000, tx)
        assert again.status_code == 200, again.text
    # ... and the cached states of its wallets are gone.
    assert await balance(api, auth, src["id"]) == "90.00"
    assert await balance(api, other_auth, dst["id"]) == "10.00"
    assert json.loads(await redis.get(key) or b"{}").get("balance") != json.loads(before)["balance"]
    await redis.aclose()
