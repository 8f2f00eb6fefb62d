"""Sliding-window rate limits in Redis, shared by every gateway instance.

One Lua script per request keeps it atomic and makes it one Redis command: the
session's owner (when the route needs a session), then trim the window, count, admit or
refuse. (A pipeline of the session's HGET and the limit's script, as it once was, was
one round trip too, but building and running a pipeline per request was a fifth of the
gateway's CPU under load: py-spy, docs/benchmarks.md.)
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from paysys.kit.redis import LuaScript

# KEYS[1]: the window of the limit; KEYS[2], when the route needs a session: the
# session, whose owner comes back third (false: no such session).
_ADMIT = """
local owner = false
if KEYS[2] then owner = redis.call('HGET', KEYS[2], 'user_id') end
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window))
  return {1, 0, owner}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.ceil(tonumber(oldest[2]) + window - now), owner}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: int


def ip_identity(ip: str) -> str:
    """Whom a per-IP limit counts: the address, or for IPv6 its /64. One subscriber
    usually holds a whole /64, so counting single IPv6 addresses limits nothing."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class RateLimiter:
    def __init__(self, window_seconds: int) -> None:
        self.window_ms = window_seconds * 1000
        self.script = LuaScript(_ADMIT)

    async def admit(
        self, redis: Redis, scope: str, identity: str, limit: int, session: str | None
    ) -> tuple[Decision, str | None]:
        """One hit against the limit, and the owner of `session` (a session key; None:
        none asked), in one command."""
        now_ms = int(time.time() * 1000)
        member = f"{now_ms}-{uuid.uuid4().hex[:8]}"
        window = f"rl:{scope}:{identity}"
        keys = [window] if session is None else [window, session]
        allowed, retry_ms, *owner = await self.script.run(
            redis, keys, [now_ms, self.window_ms, limit, member]
        )
        # No session: a nil (RESP2) or false (RESP3), or nothing when none was asked.
        if allowed:
            decision = Decision(True, 0)
        else:  # the wait in whole seconds, rounded up, at least one
            decision = Decision(False, max(1, -(-int(retry_ms) // 1000)))
        return decision, (owner[0] or None) if owner else None
