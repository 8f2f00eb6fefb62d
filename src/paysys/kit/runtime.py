"""What a service process holds while it runs: database, Redis, MongoDB, the pooled
HTTP session, the outbox relay and background tasks, with a readiness check for each."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import aiohttp
import asyncpg
import structlog
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis
from sqlalchemy import Table, text

from paysys.kit import migrate
from paysys.kit.app import TaskGroup
from paysys.kit.consumer import ensure_topics
from paysys.kit.db import Database
from paysys.kit.errors import NotReady
from paysys.kit.events import TOPICS
from paysys.kit.http import ServiceClient, make_session
from paysys.kit.logging import configure_logging
from paysys.kit.mongo import ensure_indexes, make_mongo
from paysys.kit.outbox import (
    KafkaSink,
    Outbox,
    OutboxRelay,
    RelayNudge,
    listen_for_nudges,
    wake_channel,
)
from paysys.kit.records import MongoSink, Records
from paysys.kit.redis import make_redis
from paysys.kit.settings import KitSettings

log = structlog.get_logger()


S = TypeVar("S", bound=KitSettings)


class Runtime(Generic[S]):
    """Typed by the service's settings class: `Runtime[UsersSettings]`."""

    def __init__(
        self,
        service: str,
        settings: S,
        *,
        schema: str | None = None,
        outbox: Table | None = None,
        records: Table | None = None,
        redis: bool = False,
        mongo: bool = False,
        kafka: bool = False,
        http: bool = False,
        relay_only: bool = False,
    ) -> None:
        """`relay_only`: the process of `paysys relay SERVICE` (kit.relays): the
        service's relays, nothing else."""
        self.service = service
        self.relay_only = relay_only
        self._nudge: RelayNudge | None = None
        self.settings: S = settings
        self.schema = schema
        self._outbox_table = outbox
        self._records_table = records
        self._want_redis = redis
        self._want_mongo = mongo
        self._want_kafka = kafka or outbox is not None
        self._consumes_kafka = kafka
        self._want_http = http
        self.tasks = TaskGroup()
        # What /ready requires (what a request of this process needs), and what it only
        # reports (dependencies of background work: relays, which wait out an outage).
        self.checks: dict[str, Callable[[], Awaitable[Any]]] = {}
        self.background: dict[str, Callable[[], Awaitable[Any]]] = {}
        self._db: Database | None = None
        self._redis: Redis | None = None
        self._mongo_client: AsyncMongoClient[Any] | None = None
        self._mongo: AsyncDatabase[Any] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.outbox: Outbox | None = None
        self.relay: OutboxRelay | None = None
        self.records: Records | None = None

    @property
    def db(self) -> Database:
        assert self._db is not None, "this service has no database"
        return self._db

    @property
    def redis(self) -> Redis:
        assert self._redis is not None, "this service has no Redis"
        return self._redis

    @property
    def mongo(self) -> AsyncDatabase[Any]:
        assert self._mongo is not None, "this service has no MongoDB"
        return self._mongo

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "this service has no HTTP client"
        return self._http

    @property
    def records_or_fail(self) -> Records:
        assert self.records is not None, "this service keeps no MongoDB records"
        return self.records

    @property
    def outbox_or_fail(self) -> Outbox:
        assert self.outbox is not None, "this service has no outbox"
        return self.outbox

    def client(self, service: str, timeout: float = 5.0) -> ServiceClient:
        return ServiceClient(
            self.http, self.settings.url_of(service), self.settings.internal_token, timeout
        )

    async def start(self) -> None:
        s = self.settings
        if self.schema is not None:
            if s.migrate_on_start and not self.relay_only:
                await _retry(
                    "postgres", lambda: migrate.upgrade(self.schema or "", s.database_url, s)
                )
            self._db = Database(s.database_url, self.schema, s.db_pool_size, s.db_pooler)
            db = self._db
            wanted = migrate.head(self.schema)

            async def check_postgres() -> None:
                # Answering is not enough: the schema must be the one this code needs
                # (a pod whose migration has not run would answer 500 to everything).
                async with db.engine.connect() as conn:
                    at = (
                        await conn.execute(text("SELECT version_num FROM alembic_version"))
                    ).scalar()
                if at != wanted:
                    raise NotReady(f"schema at {at}, this code needs {wanted}")

            self.checks["postgres"] = check_postgres
            if self.relay_only:  # the service migrates; its relays wait for the tables
                await _retry("postgres", check_postgres, seconds=300)
        if self._want_redis:
            self._redis = make_redis(s.redis_url)
            r = self._redis

            async def check_redis() -> None:
                await r.ping()

            self.checks["redis"] = check_redis
        if self._want_mongo:
            self._mongo_client, self._mongo = make_mongo(s.mongodb_url, s.mongodb_database)
            mdb = self._mongo
            await _retry("mongodb", lambda: ensure_indexes(mdb))

            async def check_mongodb() -> None:
                await mdb.command("ping")

            # Only the records relay writes to MongoDB, after the commit: no request
            # waits for it, so an outage is an alert (outbox lag), not unreadiness.
            self.background["mongodb"] = check_mongodb
        if self._want_kafka:
            topics = [s.kafka_topic_prefix + t for t in TOPICS]
            await _retry(
                "kafka",
                lambda: ensure_topics(
                    s.kafka_bootstrap_servers,
                    topics,
                    replication_factor=s.kafka_replication_factor,
                    min_insync_replicas=s.kafka_min_insync_replicas,
                    options=s.kafka_options(),
                ),
            )
            host, _, port = s.kafka_bootstrap_servers.split(",")[0].rpartition(":")

            async def check_kafka() -> None:
                _, writer = await asyncio.open_connection(host, int(port))
                writer.close()

            # A consumer needs the broker to do its work; an outbox relay does not need it
            # for any request (events wait in PostgreSQL): there it is only reported.
            (self.checks if self._consumes_kafka else self.background)["kafka"] = check_kafka
        if self._outbox_table is not None:
            self.outbox = Outbox(self._outbox_table, self.service)
        if self._records_table is not None:
            self.records = Records(self._records_table)
        if self.relay_only or s.relays == "inline":
            self._start_relays()
        elif self._outbox_table is not None or self._records_table is not None:
            # PAYSYS_RELAYS=apart: `paysys relay SERVICE` publishes; this process, which
            # wrote the rows, wakes it (kit.outbox.RelayNudge).
            self._nudge = RelayNudge(self.db, s.outbox_linger_ms / 1000)
            for table in (self._outbox_table, self._records_table):
                if table is not None:
                    self.db.on_commit(table.name, self._nudge.hook(table.name))
        if self._want_http:
            self._http = make_session(
                ca_file=s.tls_ca_file, idle_seconds=s.http_client_idle_seconds
            )

    def _start_relays(self) -> None:
        """The outbox's relay to Kafka and the records' relay to MongoDB, in this process
        (woken by its own commits), or in a relay process (woken by NOTIFY)."""
        s = self.settings
        relays: dict[str, OutboxRelay] = {}
        if self._outbox_table is not None:
            self.relay = OutboxRelay(
                self.db,
                self._outbox_table,
                self.service,
                KafkaSink(s.kafka_bootstrap_servers, s.kafka_topic_prefix, s.kafka_options()),
                linger_seconds=s.outbox_linger_ms / 1000,
            )
            relays[self._outbox_table.name] = self.relay
        if self._records_table is not None:
            relays[self._records_table.name] = OutboxRelay(
                self.db,
                self._records_table,
                f"{self.service}-records",
                MongoSink(self.mongo),
                linger_seconds=s.outbox_linger_ms / 1000,
            )
        for table, relay in relays.items():
            self.tasks.start(f"{table}-relay", relay.run)
        if self.relay_only and s.db_pooler != "transaction":
            # The pool's own connection arguments (the URL's options, TLS among them),
            # as SQLAlchemy's asyncpg dialect makes them from DATABASE_URL.
            engine = self.db.engine
            args, options = engine.dialect.create_connect_args(engine.url)
            options.update(
                timeout=5, server_settings={"application_name": f"paysys-{self.schema}-relay"}
            )

            async def connect() -> Any:
                return await asyncpg.connect(*args, **options)

            channel = wake_channel(self.db.schema)
            self.tasks.start("relay-wake", lambda: listen_for_nudges(connect, channel, relays))

    async def stop(self) -> None:
        await self.tasks.stop()
        if self._nudge is not None:
            await self._nudge.close()
        if self._http is not None:
            await self._http.close()
        if self._redis is not None:
            await self._redis.aclose()
        if self._mongo_client is not None:
            await self._mongo_client.close()
        if self._db is not None:
            await self._db.dispose()

    def lifespan(
        self, on_start: Callable[[FastAPI], Awaitable[None]] | None = None
    ) -> Callable[[FastAPI], Any]:
        @asynccontextmanager
        async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
            name = f"{self.service}-relay" if self.relay_only else self.service
            configure_logging(name, self.settings.log_level)
            app.state.rt = self
            await self.start()
            app.state.checks.update(self.checks)
            app.state.background.update(self.background)
            if on_start is not None:
                await on_start(app)
            settle_gc(self.settings.gc_threshold)
            s = self.settings
            own = s.relay_port_of(self.service) if self.relay_only else s.port_of(self.service)
            log.info("service_started", port=s.listen_port or own)
            try:
                yield
            finally:
                await self.stop()

        return _lifespan


def settle_gc(threshold: int) -> None:
    """Once a process has started: what it built (modules, the app, its pools) leaves
    the garbage collector's scans for good, and young collections run every `threshold`
    allocations, older ones 20 and 100 times rarer (Python: 700, 10, 10)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 20, 100)


async def _retry(name: str, fn: Callable[[], Awaitable[Any]], seconds: float = 60.0) -> Any:
    """Startup waits for a dependency that is still coming up, instead of crashing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    delay = 0.2
    while True:
        try:
            return await fn()
        except Exception as exc:
            if loop.time() > deadline:
                raise
            log.warning("dependency_not_ready", dependency=name, error=str(exc)[:200])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)
