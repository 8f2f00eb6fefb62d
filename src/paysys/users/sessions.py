"""Login sessions in Redis: refresh-token rotation with reuse detection.

A refresh token is `<session id>.<secret>`; the session keeps the hash of the current
secret and the hashes of spent ones. Presenting a spent secret means the token leaked
(or a client replayed it): the whole session is revoked. A session ends after the idle
TTL without a refresh, and at the latest `max_age` after its login.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from paysys.kit.auth import session_key

# Atomic rotate-or-revoke, so two concurrent refreshes with one token cannot both win.
# ARGV: presented hash, new hash, idle ttl, now, max age. The TTL never reaches past
# the session's absolute end.
_ROTATE = """
local current = redis.call('HGET', KEYS[1], 'refresh')
if not current then return {0, false} end
local ends = tonumber(redis.call('HGET', KEYS[1], 'created') or '0') + tonumber(ARGV[5])
local now = tonumber(ARGV[4])
if now >= ends then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {0, false}
end
if current == ARGV[1] then
  local ttl = math.min(tonumber(ARGV[3]), ends - now)
  redis.call('HSET', KEYS[1], 'refresh', ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  return {1, redis.call('HGET', KEYS[1], 'user_id')}
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {2, false}
end
return {0, false}
"""

ROTATED, REUSED, UNKNOWN = 1, 2, 0


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Rotation:
    outcome: int
    user_id: str | None
    refresh_token: str | None


def session_of(refresh_token: str) -> str | None:
    """The session id a refresh token names, if it is well formed."""
    sid, _, _ = refresh_token.partition(".")
    try:
        uuid.UUID(sid)
    except ValueError:
        return None
    return sid


class SessionStore:
    def __init__(self, redis: Redis, ttl_seconds: int, max_age_seconds: int) -> None:
        self.redis = redis
        self.ttl = ttl_seconds
        self.max_age = max_age_seconds
        self._rotate = redis.register_script(_ROTATE)

    async def create(self, user_id: str) -> tuple[str, str]:
        sid = str(uuid.uuid4())
        secret = secrets.token_urlsafe(32)
        key = session_key(sid)
        # One MULTI: a session is never there without its expiry.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={"user_id": user_id, "refresh": _hash(secret), "created": int(time.time())},
            )
            pipe.expire(key, min(self.ttl, self.max_age))
            await pipe.execute()
        return sid, f"{sid}.{secret}"

    async def owner(self, refresh_token: str) -> str | None:
        """The user of the session a refresh token names, without spending the token."""
        sid = session_of(refresh_token)
        if sid is None:
            return None
        user_id = await self.redis.hget(session_key(sid), "user_id")
        return str(user_id) if user_id else None

    async def rotate(self, refresh_token: str) -> tuple[Rotation, str | None]:
        sid = session_of(refresh_token)
        if sid is None:
            return Rotation(UNKNOWN, None, None), None
        secret = refresh_token.partition(".")[2]
        new_secret = secrets.token_urlsafe(32)
        key = session_key(sid)
        outcome, user_id = await self._rotate(
            keys=[key, f"{key}:spent"],
            args=[_hash(secret), _hash(new_secret), self.ttl, int(time.time()), self.max_age],
        )
        if int(outcome) == ROTATED:
            return Rotation(ROTATED, str(user_id), f"{sid}.{new_secret}"), sid
        return Rotation(int(outcome), None, None), sid

    async def revoke(self, sid: str) -> None:
        key = session_key(sid)
        await self.redis.delete(key, f"{key}:spent")

    async def ping(self) -> None:
        await self.redis.ping()
