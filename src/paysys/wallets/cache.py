"""Redis cache of wallet reads. Every change writes the new state through (after the
commit); a reader that fills the cache from an older read loses, because the cache only
accepts a higher version. Redis down: reads and changes go on, uncached.

A write-through that fails (Redis down) leaves the wallet's old state in Redis, and Redis
keeps it across a restart (AOF). So the keys this process could not update are
remembered and deleted first thing once Redis answers again, before any read."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from paysys.kit.redis import LuaScript

log = structlog.get_logger()

# KEYS: the wallets to write, then keys left stale by failed write-throughs (deleted
# first). ARGV: how many wallets, the TTL, then each wallet's JSON and version. A wallet
# is written only over an older version (or none).
_SET_IF_NEWER = """
local n = tonumber(ARGV[1])
for i = n + 1, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 1, n do
  local cur = redis.call('GET', KEYS[i])
  local v = cur and cjson.decode(cur)['version']
  if not (v and tonumber(v) >= tonumber(ARGV[2 * i + 2])) then
    redis.call('SET', KEYS[i], ARGV[2 * i + 1], 'EX', ARGV[2])
  end
end
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
        try:
            if self._stale:  # only after an outage: one round trip more, once
                stale = list(self._stale)
                await self.redis.delete(*stale)
                self._stale.difference_update(stale)
            raw = await self.redis.get(self.key(wallet_id))
        except RedisError:
            return None
        return orjson.loads(raw) if raw else None

    async def forget(self, wallet_ids: set[uuid.UUID]) -> None:
        """Drops these wallets' cached states: the next read takes them from the
        database (a replayed move's wallets, whose first call may have died between its
        commit and its write-through)."""
        keys = [self.key(w) for w in wallet_ids]
        try:
            await self.redis.delete(*keys)
        except RedisError:
            self._stale.update(keys)

    async def put(self, state: dict[str, Any]) -> None:
        await self.put_many([state])

    async def put_many(self, states: list[dict[str, Any]]) -> None:
        """Several states in one command (a transfer changes two wallets), which first
        deletes the keys left stale by a failed write-through."""
        keys = [self.key(uuid.UUID(state["id"])) for state in states]
        stale = list(self._stale)
        args: list[Any] = [len(keys), self.ttl]
        for state in states:
            args += [orjson.dumps(state), state["version"]]
        try:
            await self._set.run(self.redis, keys + stale, args)
        except RedisError:
            self._stale.update(keys)
            log.warning("wallet_cache_unavailable")
            return
        self._stale.difference_update(stale)
