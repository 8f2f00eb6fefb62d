"""Transactional outbox: events are rows written with the change they report, and a
relay publishes them to Kafka. No dual write: if the change rolls back, so does the event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.context import current_request_id
from paysys.kit.db import Database
from paysys.kit.events import EventEnvelope, utcnow
from paysys.kit.metrics import (
    OUTBOX_OLDEST_AGE,
    OUTBOX_PENDING,
    OUTBOX_PUBLISH_ERRORS,
    OUTBOX_PUBLISHED,
)

log = structlog.get_logger()


def outbox_table(metadata: MetaData, name: str = "outbox") -> Table:
    return Table(
        name,
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("topic", String(100), nullable=False),
        Column("key", String(100), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default="0"),
        # No index but the keys: a relay deletes what it published, so every row is
        # unpublished and the primary key orders them (migrations "outbox_one_index").
    )


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("event_type", String(100), nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("error", Text),
    )


def columns(rows: Sequence[tuple[Any, ...]], width: int = 4) -> list[list[Any]]:
    """Rows as the array parameters of an `unnest` statement (by default the four of a
    raw outbox insert), one per column, empty arrays for no rows."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Raw-form rows (`Outbox.row`, `Records.row`) through the session's transaction."""
    mark_written(session, table)
    await session.execute(
        insert(table),
        [{"event_id": e, "topic": t, "key": k, "payload": json.loads(p)} for e, t, k, p in rows],
    )


def mark_written(session: AsyncSession, table: Table) -> None:
    """Notes that this unit of work wrote to an outbox table: its relay is woken when
    (and only when) the unit of work commits."""
    session.info.setdefault("outbox_tables", set()).add(table.name)


class Outbox:
    """Writes events into a service's outbox table, inside the caller's transaction."""

    def __init__(self, table: Table, producer: str) -> None:
        self.table = table
        self.producer = producer

    def row(
        self, topic: str, key: str, data: dict[str, Any], correlation_id: str | None = None
    ) -> tuple[Any, ...]:
        """One event as the values of a raw insert: (event_id, topic, key, payload JSON),
        for a statement that inserts `unnest` of the four `columns` of its rows.

        Its correlation id the given one (work done for a request other than the
        current one: a group commit's), else the current request's. The envelope's JSON
        written straight from its fields, without an EventEnvelope per event (a group
        commit writes one per transaction; the model's validation and serialization
        were most of that): the same text as the model's `model_dump_json`, byte for
        byte (tests/unit/test_event_json.py)."""
        event_id = uuid.uuid4()
        payload = {
            "event_id": event_id,
            "event_type": topic,
            "occurred_at": utcnow(),
            "producer": self.producer,
            "schema_version": 1,
            "correlation_id": correlation_id or current_request_id(),
            "data": data,
        }
        return event_id, topic, key, orjson.dumps(payload, option=orjson.OPT_UTC_Z).decode()

    async def add(
        self, session: AsyncSession, topic: str, key: str, data: dict[str, Any]
    ) -> EventEnvelope:
        row = self.row(topic, key, data)
        await insert_rows(session, self.table, [row])
        return EventEnvelope.model_validate_json(row[3])


class Pending:
    """One row a relay is delivering: the stored JSON as text (Kafka takes it as it is)
    and, parsed on first use, as a dict (MongoDB takes documents)."""

    __slots__ = ("_payload", "correlation_id", "id", "key", "text", "topic")

    def __init__(self, id: int, topic: str, key: str, text: str, correlation_id: str | None):
        self.id, self.topic, self.key, self.text = id, topic, key, text
        self.correlation_id = correlation_id
        self._payload: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is None:
            self._payload = orjson.loads(self.text)
        return self._payload


class Sink(Protocol):
    """Where a relay delivers outbox rows. `publish` returns only once every row is
    durably accepted; the rows are deleted after that (at-least-once)."""

    async def publish(self, rows: Sequence[Pending]) -> None: ...

    async def close(self) -> None: ...


class KafkaSink:
    """Delivers events to Kafka: topic and key from the row, the envelope as value."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic_prefix: str = "",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic_prefix = topic_prefix
        self.options = dict(options or {})  # the connection's security
        self._producer: AIOKafkaProducer | None = None

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                request_timeout_ms=5000,
                retry_backoff_ms=200,
                key_serializer=lambda k: k.encode(),  # the value goes as stored: JSON text
                **self.options,
            )
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def publish(self, rows: Sequence[Pending]) -> None:
        producer = await self._ready()
        futures = []
        for row in rows:
            headers = [("event_type", row.topic.encode())]
            if row.correlation_id:
                headers.append(("x-request-id", row.correlation_id.encode()))
            futures.append(
                await producer.send(
                    self.topic_prefix + row.topic, row.text.encode(), key=row.key, headers=headers
                )
            )
        await asyncio.gather(*futures)

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await asyncio.wait_for(producer.stop(), 5)
            except Exception:
                log.debug("producer_stop_failed")


# Rows are spread over this many shards by a hash of their key. A relay publishes a
# shard only while it holds that shard's advisory lock, so two relays never publish
# rows of one key at the same time: each aggregate's events go out in commit order,
# while the relays of several instances share the shards between them.
SHARDS = 16
# For the relay's transaction only: its claim and delete go by the primary key, however
# stale the outbox's statistics are (OutboxRelay).
SEQSCAN_OFF = "SET LOCAL enable_seqscan = off"


def lock_space(schema: str, table: str) -> int:
    """The first key of the shard locks of one outbox table (a signed int4)."""
    return zlib.crc32(f"{schema}.{table}".encode()) - 2**31


class OutboxRelay:
    """Delivers unpublished rows in id order to a sink (Kafka, or MongoDB for records),
    then deletes them: the outbox holds only what is still to be delivered, so it stays
    small and needs no pruning. Sink down: rows wait in PostgreSQL, the backoff grows,
    nothing is lost.

    It wakes on a commit that wrote its table, then lingers a moment so that what
    concurrent requests commit meanwhile goes out as one batch (one claim, one publish,
    one delete, one commit), and loops at once while batches come back full. Its
    statements are plain SQL on the raw connection (prepared once per connection):
    this runs for every few events, and the ORM's per-statement cost was most of it."""

    def __init__(
        self,
        db: Database,
        table: Table,
        service: str,
        sink: Sink,
        batch_size: int = 200,
        idle_poll_seconds: float = 0.5,
        linger_seconds: float = 0.005,
    ) -> None:
        self.db = db
        self.table = table
        self.service = service
        self.sink = sink
        self.batch_size = batch_size
        self.idle_poll_seconds = idle_poll_seconds
        self.linger_seconds = linger_seconds
        self._wake = asyncio.Event()
        self._last_gauge = 0.0
        self._space = lock_space(db.schema, table.name)
        # Only rows of shards whose advisory lock this relay holds (see SHARDS), in id
        # order. The locks are taken first, once, for the shards of the oldest pending
        # rows, and the rows are read after: taken row by row inside the scan (as they
        # once were), a lock another relay released mid-scan let this one claim a later
        # row of a shard whose earlier rows it had already passed over, and publish a
        # key's events out of order (tests/integration/test_outbox.py).
        #
        # Both scans walk the primary key in id order and stop at the batch's size,
        # whatever the backlog: the shards are one array (a filter on that walk, not a
        # join that reads every pending row and sorts them), and the relay's transaction
        # forbids sequential scans (SEQSCAN_OFF). An outbox grows from nothing to tens
        # of thousands of rows within a minute of load, long before its statistics are
        # renewed; planned on the old ones (a table of a few hundred rows), the claim
        # read and sorted the whole backlog (on disk), 170 ms a call with 17,000
        # pending, so a relay that fell behind fell further behind.
        shard = f"(hashtext(key) & {SHARDS - 1})"
        self.claim_sql = (
            f"WITH oldest AS MATERIALIZED ("  # noqa: S608 - names from the schema
            f"  SELECT DISTINCT {shard} AS s FROM (SELECT key FROM {table.name}"
            f"  WHERE published_at IS NULL ORDER BY id LIMIT {int(batch_size)}) k"
            f"), mine AS MATERIALIZED ("
            f"  SELECT array_agg(s) AS s FROM oldest"
            f"  WHERE pg_try_advisory_xact_lock($1::int4, s)"
            f") SELECT id, topic, key, payload::text, payload->>'correlation_id' "
            f"FROM {table.name} WHERE published_at IS NULL "
            f"AND {shard} = ANY((SELECT s FROM mine)::int[]) "
            f"ORDER BY id LIMIT {int(batch_size)} FOR UPDATE SKIP LOCKED"
        )
        self._delete_sql = f"DELETE FROM {table.name} WHERE id = ANY($1::bigint[])"  # noqa: S608
        db.on_commit(table.name, self.poke)

    def poke(self) -> None:
        self._wake.set()

    async def publish_batch(self) -> int:
        """Publishes up to batch_size rows; returns how many went out."""
        async with self.db.raw() as conn, conn.transaction():
            await conn.execute(SEQSCAN_OFF)
            rows = [Pending(*r) for r in await conn.fetch(self.claim_sql, self._space)]
            if not rows:
                return 0
            await self.sink.publish(rows)
            await conn.execute(self._delete_sql, [r.id for r in rows])
        for row in rows:
            OUTBOX_PUBLISHED.labels(self.service, row.topic).inc()
        return len(rows)

    async def update_gauges(self) -> None:
        t = self.table
        async with self.db.uow() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))
                )
            ).one()
        OUTBOX_PENDING.labels(self.service).set(count)
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        OUTBOX_OLDEST_AGE.labels(self.service).set(max(age, 0.0))

    async def run(self) -> None:
        backoff = 0.2
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - self._last_gauge > 5.0:
                    self._last_gauge = loop.time()
                    await self.update_gauges()
                sent = await self.publish_batch()
                backoff = 0.2
                if sent < self.batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.idle_poll_seconds)
                    self._wake.clear()
                    # Linger a moment after a nudge so that events committed together
                    # by concurrent requests go out as one batch, not one query each.
                    await asyncio.sleep(self.linger_seconds)
            except asyncio.CancelledError:
                await self.sink.close()
                raise
            except Exception as exc:
                OUTBOX_PUBLISH_ERRORS.labels(self.service).inc()
                log.warning("outbox_publish_failed", error=str(exc)[:300], retry_in=backoff)
                await self.sink.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)


def wake_channel(schema: str) -> str:
    """The PostgreSQL NOTIFY channel on which a schema's relays are woken."""
    return f"paysys_relay_{schema}"


class RelayNudge:
    """A service whose relays run in processes of their own (PAYSYS_RELAYS=apart) wakes
    them with a NOTIFY on the schema's channel, the table as payload, after a commit that
    wrote an outbox table: once at once, then at most once more per `every` seconds
    however many commits come (a relay lingers anyway). The NOTIFY is its own statement
    on its own connection, never inside the money path's transactions: PostgreSQL
    serializes the commits of transactions that notify."""

    def __init__(self, db: Database, every: float) -> None:
        self.db, self.every = db, every
        self.channel = wake_channel(db.schema)
        self._due: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def hook(self, table: str) -> Callable[[], None]:
        def nudge() -> None:
            self._due.add(table)
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._send())

        return nudge

    async def _send(self) -> None:
        try:
            while self._due:
                tables, self._due = self._due, set()
                try:
                    async with self.db.raw() as conn:
                        for table in sorted(tables):
                            await conn.execute("SELECT pg_notify($1, $2)", self.channel, table)
                except Exception as exc:  # the relays' idle poll finds the rows anyway
                    log.warning("relay_nudge_failed", error=type(exc).__name__)
                await asyncio.sleep(self.every)
        finally:
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def listen_for_nudges(
    connect: Callable[[], Awaitable[Any]], channel: str, relays: Mapping[str, OutboxRelay]
) -> None:
    """A relay process's ear: one connection LISTENing on the schema's channel, poking
    the relay of the table named in each NOTIFY. A lost connection is made again; the
    relays poll meanwhile, every half second, as they do behind PgBouncer in
    transaction mode (which carries no LISTEN)."""

    def on_notify(_conn: Any, _pid: int, _channel: str, table: str) -> None:
        if (relay := relays.get(table)) is not None:
            relay.poke()

    while True:
        conn = await connect()
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _conn, ended=closed: ended.set())
        try:
            await conn.add_listener(channel, on_notify)
            for relay in relays.values():  # what was committed while nobody listened
                relay.poke()
            while not closed.is_set():
                try:
                    await asyncio.wait_for(closed.wait(), 30)
                except TimeoutError:
                    await conn.execute("SELECT 1")  # a peer gone silently shows here
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
