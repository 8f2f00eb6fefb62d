"""Sliding-window rate limits in Redis, shared by every gateway instance.

One Lua script keeps each check atomic: the session's owner (when the route needs a
session), then trim the window, count, admit or refuse. (A pipeline of the session's HGET
and the limit's script, as it once was, was one round trip too, but building and running
a pipeline per request was a fifth of the gateway's CPU under load: py-spy,
docs/benchmarks.md.) The checks of the requests that arrive together go in one command,
as the money path's group commit does (issue 21): redis-py's work per command (its pool,
its argument checks, the reply) was 13 % of the gateway's samples under load, paid once per
request; the script takes them one after the other, so each sees the ones before it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from paysys.kit.redis import LuaScript

# For each check, in order: KEYS, its window, then (when the route needs a session) the
# session, whose owner comes back third (false: no such session); ARGV: now and the
# window's length, then per check its limit, a member for its hit, and whether a session
# key follows ("1"). Back: per check, admitted (1/0), the wait in ms, the owner.
_ADMIT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local out = {}
local k = 1
for a = 3, #ARGV, 3 do
  local key = KEYS[k]
  k = k + 1
  local owner = false
  if ARGV[a + 2] == '1' then
    owner = redis.call('HGET', KEYS[k], 'user_id')
    k = k + 1
  end
  local limit = tonumber(ARGV[a])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count < limit then
    redis.call('ZADD', key, now, ARGV[a + 1])
    redis.call('PEXPIRE', key, math.ceil(window))
    out[#out + 1] = 1
    out[#out + 1] = 0
  else
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    out[#out + 1] = 0
    out[#out + 1] = math.ceil(tonumber(oldest[2]) + window - now)
  end
  out[#out + 1] = owner
end
return out
"""
# The most checks in one command (a larger crowd goes in several, one after the other).
MAX_CHECKS = 200


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


@dataclass
class _Check:
    window: str
    session: str | None
    limit: int
    member: str
    future: asyncio.Future[tuple[Decision, str | None]]


class RateLimiter:
    def __init__(self, window_seconds: int) -> None:
        self.window_ms = window_seconds * 1000
        self.script = LuaScript(_ADMIT)
        self._waiting: list[_Check] = []
        self._sending = False

    async def admit(
        self, redis: Redis, scope: str, identity: str, limit: int, session: str | None
    ) -> tuple[Decision, str | None]:
        """One hit against the limit, and the owner of `session` (a session key; None:
        none asked): with the other requests' checks waiting at that moment, one
        command. A lone request goes at once (at the loop's next turn): no timer."""
        check = _Check(
            f"rl:{scope}:{identity}",
            session,
            limit,
            f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}",
            asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(check)
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().call_soon(self._start, redis)
        # Shielded: a request that goes away leaves its check to be counted with the rest.
        return await asyncio.shield(check.future)

    def _start(self, redis: Redis) -> None:
        task = asyncio.ensure_future(self._send_all(redis))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _send_all(self, redis: Redis) -> None:
        """Sends what waits, and what came meanwhile, until nothing does."""
        try:
            while self._waiting:
                checks, self._waiting = self._waiting[:MAX_CHECKS], self._waiting[MAX_CHECKS:]
                try:
                    results = await self._run(redis, checks)
                except Exception as exc:  # Redis down: each request answers 503
                    for check in checks:
                        if not check.future.done():
                            check.future.set_exception(exc)
                    continue
                for check, result in zip(checks, results, strict=True):
                    if not check.future.done():
                        check.future.set_result(result)
        finally:
            self._sending = False

    async def _run(self, redis: Redis, checks: list[_Check]) -> list[tuple[Decision, str | None]]:
        keys: list[str] = []
        args: list[Any] = [int(time.time() * 1000), self.window_ms]
        for c in checks:
            keys += [c.window] if c.session is None else [c.window, c.session]
            args += [c.limit, c.member, "0" if c.session is None else "1"]
        out = await self.script.run(redis, keys, args)
        results = []
        for n in range(len(checks)):
            allowed, retry_ms, owner = out[3 * n : 3 * n + 3]
            if allowed:
                decision = Decision(True, 0)
            else:  # the wait in whole seconds, rounded up, at least one
                decision = Decision(False, max(1, -(-int(retry_ms) // 1000)))
            # No session: a nil (RESP2) or false (RESP3).
            results.append((decision, owner or None))
        return results
