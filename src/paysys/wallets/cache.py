"""Redis cache of wallet reads. Every change writes the new state through (after the
commit); a reader that fills the cache from an older read loses, because the cache only
accepts a higher version. Redis down: reads and changes go on, uncached.

A write-through that fails (Redis down) leaves the wallet's old state in Redis, and Redis
keeps it across a restart (AOF). So the keys this process could not update are
remembered and deleted first thing once Redis answers again, before any read."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from paysys.kit.redis import LuaScript, run_pipeline

log = structlog.get_logger()

_SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = cjson.decode(cur)['version']
  if v and tonumber(v) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


class WalletCache:
    def __init__(self, redis: Redis, ttl_seconds: int = 300) -> None:
        self.redis = redis
        self.ttl = ttl_seconds
        self._set = LuaScript(_SET_IF_NEWER)
        self._stale: set[str] = set()  # keys whose write-through failed

    @staticmethod
    def key(wallet_id: uuid.UUID) -> str:
        return f"wallet:{wallet_id}"

    async def get(self, wallet_id: uuid.UUID) -> dict[str, Any] | None:
        key = self.key(wallet_id)
        try:
            raw = (await self._run(lambda pipe: pipe.get(key)))[-1]
        except RedisError:
            return None
        return json.loads(raw) if raw else None

    async def put(self, state: dict[str, Any]) -> None:
        await self.put_many([state])

    async def put_many(self, states: list[dict[str, Any]]) -> None:
        """Several states in one round trip (a transfer changes two wallets)."""

        def build(pipe: Pipeline) -> None:
            for state in states:
                self._set.queue(
                    pipe,
                    [self.key(uuid.UUID(state["id"]))],
                    [json.dumps(state), state["version"], self.ttl],
                )

        try:
            await self._run(build)
        except RedisError:
            self._stale.update(self.key(uuid.UUID(state["id"])) for state in states)
            log.warning("wallet_cache_unavailable")

    async def _run(self, build: Callable[[Pipeline], Any]) -> list[Any]:
        """One round trip, which first deletes the keys left stale by a failed
        write-through (then forgotten: they are gone from Redis)."""
        stale = list(self._stale)

        def with_cleanup(pipe: Pipeline) -> None:
            if stale:
                pipe.delete(*stale)
            build(pipe)

        results = await run_pipeline(self.redis, with_cleanup, (self._set,))
        self._stale.difference_update(stale)
        return results
