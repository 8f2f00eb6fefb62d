"""redis-py asyncio client factory, and Lua scripts run by EVALSHA."""

from __future__ import annotations

import hashlib
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError


def make_redis(url: str, max_connections: int = 64) -> Redis:
    # A bounded pool that callers wait on: a burst of requests queues for a connection
    # instead of opening one socket each (a burst of 200 made connects time out, and the
    # gateway, failing closed, answered 503 where it should have answered 429).
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=10,
        # A pooled connection that Redis dropped (it restarted) fails its next command:
        # that command goes once more, on a fresh connection, instead of answering 503.
        # Not on a timeout: a Redis that hangs is refused after one socket_timeout.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )
    return Redis.from_pool(pool)  # closes the pool with the client


class LuaScript:
    """A Lua script run by EVALSHA alone. redis-py's own Script asks SCRIPT EXISTS
    before a pipeline that carries it, one round trip more each time; here a NOSCRIPT
    answer (Redis restarted and forgot it) loads it and runs it once more."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Redis's script id

    async def run(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        """The script alone, as one command (no pipeline to build); loads it if Redis
        has forgotten it."""
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.text)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
