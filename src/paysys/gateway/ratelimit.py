"""Sliding-window rate limits in Redis, shared by every gateway instance.

One Lua script per check keeps it atomic: trim the window, count, admit or refuse.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

_SLIDING_WINDOW = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window))
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.ceil(tonumber(oldest[2]) + window - now)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: int


class RateLimiter:
    def __init__(self, redis: Redis, window_seconds: int) -> None:
        self.window_ms = window_seconds * 1000
        self._script = redis.register_script(_SLIDING_WINDOW)

    async def hit(self, scope: str, identity: str, limit: int) -> Decision:
        now_ms = int(time.time() * 1000)
        allowed, retry_ms = await self._script(
            keys=[f"rl:{scope}:{identity}"],
            args=[now_ms, self.window_ms, limit, f"{now_ms}-{uuid.uuid4().hex[:8]}"],
        )
        return Decision(bool(allowed), max(1, -(-int(retry_ms) // 1000)) if not allowed else 0)
