"""Sliding-window rate limits in Redis, shared by every gateway instance.

One Lua script per check keeps it atomic: trim the window, count, admit or refuse. The
check is queued on the caller's pipeline, so that the gateway asks Redis for the
session and the limit in one round trip.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from paysys.kit.redis import LuaScript

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
        self.script = LuaScript(_SLIDING_WINDOW)

    def queue(self, pipe: Pipeline, scope: str, identity: str, limit: int) -> None:
        """Adds one hit to `pipe`; its result goes to `decision`."""
        now_ms = int(time.time() * 1000)
        member = f"{now_ms}-{uuid.uuid4().hex[:8]}"
        self.script.queue(pipe, [f"rl:{scope}:{identity}"], [now_ms, self.window_ms, limit, member])

    @staticmethod
    def decision(result: Any) -> Decision:
        allowed, retry_ms = result
        if allowed:
            return Decision(True, 0)
        return Decision(False, max(1, -(-int(retry_ms) // 1000)))
