"""Authorizations' holds and their captures in batches (hold_batch and capture_batch,
migrations 0015 and 0017), against the real wallets schema: in order, each with its own
outcome, once per transaction id; and batches of holds, of moves and of captures, single
holds and captures racing over the same hot wallets never deadlock and leave the books
right."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import asyncpg

from paysys.kit.db import Database
from paysys.kit.errors import ValidationFailed
from paysys.kit.outbox import Outbox
from paysys.wallets import service
from paysys.wallets.models import outbox as wallets_outbox
from tests.conftest import Stack
from tests.integration.test_hold_functions import MAXIMUMS, state
from tests.integration.test_move_batch import balances, wallets
from tests.integration.test_transfer_outcome import two_wallets

OUTBOX = Outbox(wallets_outbox, "wallets")
NO_LIMITS: dict[str, dict[str, tuple[int | None, int | None, int | None]]] = {}


def item(src: uuid.UUID, dst: uuid.UUID, amount: int) -> service.HoldItem:
    return service.HoldItem(uuid.uuid4(), src, dst, amount, "USD", "order", "req-1")


async def test_holds_go_in_order_each_with_its_outcome_once(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.infra.dsn)
    db = Database(stack.infra.database_url, "wallets", pool_size=2)
    try:
        payer, merchant = await two_wallets(conn, 500)
        items = [
            item(payer, merchant, 300),
            item(payer, merchant, 250),  # more than the 200 left: refused alone
            item(payer, merchant, 200),  # what is left, exactly
            item(payer, uuid.uuid4(), 1),  # no such merchant wallet
            item(payer, merchant, 1),  # nothing left
        ]
        outcomes, states = await service.hold_batch(db, OUTBOX, items, MAXIMUMS)
        kinds = [type(o).__name__ for o in outcomes]
        assert kinds == ["Held", "Refused", "Held", "Missing", "Refused"]
        refused = [o for o in outcomes if isinstance(o, service.Refused)]
        assert [(o.code, o.wallet_id) for o in refused] == [("INSUFFICIENT_FUNDS", payer)] * 2
        assert await state(conn, payer) == (500, 500, 500)
        assert states and states[-1]["held_balance"] == 500  # latest last
        # Asked again (a retry of the whole batch): the first outcomes, nothing more held.
        again, _ = await service.hold_batch(db, OUTBOX, items, MAXIMUMS)
        assert [type(o).__name__ for o in again] == kinds
        assert await state(conn, payer) == (500, 500, 500)
        rows = await conn.fetch(
            "SELECT transaction_id, status, amount FROM wallets.holds WHERE wallet_id = $1",
            payer,
        )
        by_tx = {r["transaction_id"]: (r["status"], r["amount"]) for r in rows}
        assert by_tx == {
            items[0].transaction_id: ("open", 300),
            items[1].transaction_id: ("refused", 250),
            items[2].transaction_id: ("open", 200),
            items[4].transaction_id: ("refused", 1),
        }
        # Each held one is captured as any hold is.
        captured = await service.capture(db, OUTBOX, items[0].transaction_id, 300)
        assert isinstance(captured, service.Captured)
        assert await state(conn, payer) == (200, 200, 500)
    finally:
        await db.dispose()
        await conn.close()


async def test_captures_go_in_order_each_with_its_outcome_once(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.infra.dsn)
    db = Database(stack.infra.database_url, "wallets", pool_size=2)
    try:
        payer, merchant = await two_wallets(conn, 1000)
        other, closed = await two_wallets(conn, 1000)
        held = [item(payer, merchant, 300), item(payer, merchant, 200), item(other, closed, 100)]
        outcomes, _ = await service.hold_batch(db, OUTBOX, held, MAXIMUMS)
        assert all(isinstance(o, service.Held) for o in outcomes)
        await conn.execute("UPDATE wallets.wallets SET status = 'INACTIVE' WHERE id = $1", closed)
        captures = [
            service.CaptureItem(held[0].transaction_id, 300, "req-2"),  # all of it
            service.CaptureItem(held[1].transaction_id, 250),  # more than is held
            service.CaptureItem(held[2].transaction_id, 100),  # the merchant's wallet closed
            service.CaptureItem(uuid.uuid4(), 1),  # no such hold
        ]
        outcomes, states = await service.capture_batch(db, OUTBOX, captures)
        assert [type(o).__name__ for o in outcomes] == [
            "Captured",
            "TooMuch",
            "Refused",
            "NoneType",
        ]
        assert outcomes[0] == service.Captured(300, [])
        assert outcomes[2] == service.Refused("WALLET_INACTIVE", closed)
        assert {s["id"] for s in states} == {str(payer), str(merchant)}
        # The refused and the too-large left their holds open; the second now goes in
        # part, and the first, asked again, is its first capture's amount.
        again, _ = await service.capture_batch(
            db, OUTBOX, [captures[1], service.CaptureItem(held[0].transaction_id, 1)]
        )
        assert [type(o).__name__ for o in again] == ["TooMuch", "Captured"]
        assert again[1] == service.Captured(300, [], frozenset({payer, merchant}))  # a replay
        part, _ = await service.capture_batch(
            db, OUTBOX, [service.CaptureItem(held[1].transaction_id, 150)]
        )
        assert part == [service.Captured(150, [])]
        assert await state(conn, payer) == (550, 0, 450)  # 1000 - 300 - 150; 50 given back
        assert await state(conn, other) == (1000, 100, 100)  # still held
        assert await balances(conn, [payer, merchant]) == [550, 450]
        events = await conn.fetch(
            "SELECT topic, payload->>'correlation_id' AS rid FROM wallets.outbox"
            " WHERE payload->'data'->>'transaction_id' = $1 AND topic <> 'wallet.funds_held'"
            " ORDER BY id",
            str(held[0].transaction_id),
        )
        assert [(e["topic"], e["rid"]) for e in events] == [
            ("wallet.funds_released", "req-2"),
            ("wallet.funds_deducted", "req-2"),
            ("wallet.funds_added", "req-2"),
        ]
    finally:
        await db.dispose()
        await conn.close()


async def test_hold_batches_moves_and_captures_racing_never_deadlock(stack: Stack) -> None:
    # Two pools (two wallets instances' worth), for 8 s: batches of holds, batches of
    # moves, single holds of the batches' own transaction ids (a recovery worker's
    # retry), captures alone and in batches, over the same six hot wallets in random
    # orders.
    pools = [Database(stack.infra.database_url, "wallets", pool_size=4) for _ in range(2)]
    conn = await asyncpg.connect(stack.infra.dsn)
    hot = await wallets(conn, *[100_000] * 6)
    rng = random.Random(15)
    deadline = time.monotonic() + 8
    held: list[service.HoldItem] = []
    counts = {"held": 0, "moved": 0, "captured": 0}

    async def holder(db: Database) -> None:
        while time.monotonic() < deadline:
            batch = [
                item(*rng.sample(hot, 2), rng.randint(1, 900)) for _ in range(rng.randint(1, 20))
            ]
            # and some held before, asked again (a group's retry), racing their captures
            batch += rng.sample(held[-8:], min(len(held), rng.randint(0, 3)))
            outcomes, _ = await service.hold_batch(db, OUTBOX, batch, NO_LIMITS)
            for i, o in zip(batch, outcomes, strict=True):
                if isinstance(o, service.Held) and i not in held:
                    held.append(i)
                    counts["held"] += 1

    async def mover(db: Database) -> None:
        while time.monotonic() < deadline:
            moves = [
                service.Move(uuid.uuid4(), *rng.sample(hot, 2), rng.randint(1, 900), "USD")
                for _ in range(rng.randint(1, 20))
            ]
            applied = await service.move_batch(db, OUTBOX, moves, NO_LIMITS)
            counts["moved"] += sum(isinstance(o, service.Moved) for o in applied.outcomes)

    async def capturer(db: Database) -> None:
        while time.monotonic() < deadline:
            if not held:
                await asyncio.sleep(0.01)
                continue
            h = rng.choice(held[-8:])  # the latest: those a batch may be asking again
            # a retry of the hold first (once per transaction id: its first outcome)
            again = await service.hold(
                db, OUTBOX, h.transaction_id, h.source, h.destination, h.amount, "USD", NO_LIMITS
            )
            assert isinstance(again, service.Held)
            if rng.random() < 0.5:
                try:
                    done = await service.capture(db, OUTBOX, h.transaction_id, h.amount)
                except ValidationFailed:
                    continue
                counts["captured"] += isinstance(done, service.Captured)
                continue
            # a batch of the latest, in a random order, some in part (a retry of a
            # capture asks for its first amount: it is taken once)
            batch = rng.sample(held[-8:], min(len(held), rng.randint(1, 5)))
            outcomes, _ = await service.capture_batch(
                db,
                OUTBOX,
                [service.CaptureItem(c.transaction_id, rng.randint(1, c.amount)) for c in batch],
            )
            counts["captured"] += sum(isinstance(o, service.Captured) for o in outcomes)

    try:
        await asyncio.gather(*(f(db) for db in pools for f in (holder, mover, capturer, holder)))
        assert min(counts.values()) > 10, counts
        # Conservation: the six hold all there was; each balance is its ledger, never
        # below what it holds, and what it holds is its open holds.
        assert sum(await balances(conn, hot)) == 600_000
        rows = await conn.fetch(
            "SELECT w.id, w.balance, w.held_balance, coalesce(sum(h.amount)"
            " FILTER (WHERE h.status = 'open'), 0) AS open FROM wallets.wallets w"
            " LEFT JOIN wallets.holds h ON h.wallet_id = w.id WHERE w.id = ANY($1::uuid[])"
            " GROUP BY w.id",
            hot,
        )
        for r in rows:
            assert 0 <= r["held_balance"] == r["open"] <= r["balance"], dict(r)
    finally:
        for db in pools:
            await db.dispose()
        await conn.close()
