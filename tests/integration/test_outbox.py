"""The outbox relay against the real Kafka broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, insert, select

from paysys.kit.context import bind_request
from paysys.kit.db import Database
from paysys.kit.outbox import (
    KafkaSink,
    Outbox,
    OutboxRelay,
    RelayNudge,
    listen_for_nudges,
    wake_channel,
)
from tests.conftest import Infra, stack_cmd
from tests.integration.conftest import Scratch


async def consume(infra: Infra, topic: str, want: int, timeout: float = 60) -> list[object]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    got: list[object] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < want and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                got.extend(records)
        # linger briefly: a duplicate would show up here
        batches = await consumer.getmany(timeout_ms=1500)
        for records in batches.values():
            got.extend(records)
    finally:
        await consumer.stop()
    return got


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_event_committed_with_change_is_published_with_contract_envelope_and_key(
    scratch: Scratch, infra: Infra
) -> None:
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    outbox = Outbox(scratch.outbox, "kit-test")
    bind_request("req-123")
    relay = OutboxRelay(scratch.db, scratch.outbox, "kit-test", KafkaSink(infra.kafka))
    async with running(relay):
        async with scratch.db.uow() as session:
            await session.execute(insert(scratch.things).values(id=1, name="a"))
            envelope = await outbox.add(session, topic, "aggregate-1", {"answer": 42})
        records = await consume(infra, topic, 1)
    assert len(records) == 1
    record = records[0]
    assert record.key == b"aggregate-1"  # type: ignore[attr-defined]
    value = json.loads(record.value)  # type: ignore[attr-defined]
    assert set(value) == {
        "event_id",
        "event_type",
        "occurred_at",
        "producer",
        "schema_version",
        "correlation_id",
        "data",
    }
    assert value["event_id"] == str(envelope.event_id)
    assert value["event_type"] == topic
    assert value["producer"] == "kit-test"
    assert value["correlation_id"] == "req-123"
    assert value["data"] == {"answer": 42}
    assert value["occurred_at"].endswith("Z") or value["occurred_at"].endswith("+00:00")


async def test_rolled_back_change_publishes_nothing(scratch: Scratch, infra: Infra) -> None:
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    outbox = Outbox(scratch.outbox, "kit-test")
    with pytest.raises(RuntimeError):
        async with scratch.db.uow() as session:
            await session.execute(insert(scratch.things).values(id=2, name="b"))
            await outbox.add(session, topic, "k", {"n": 1})
            raise RuntimeError("business rule failed")
    async with scratch.db.uow() as session:
        rows = (await session.execute(select(func.count()).select_from(scratch.outbox))).scalar()
        things = (await session.execute(select(func.count()).select_from(scratch.things))).scalar()
    assert rows == 0
    assert things == 0
    relay = OutboxRelay(scratch.db, scratch.outbox, "kit-test", KafkaSink(infra.kafka))
    assert await relay.publish_batch() == 0
    await relay.sink.close()


@pytest.mark.disruptive
async def test_events_wait_while_broker_is_down_and_all_go_out_once_after_it_returns(
    scratch: Scratch, infra: Infra
) -> None:
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    outbox = Outbox(scratch.outbox, "kit-test")
    relay = OutboxRelay(scratch.db, scratch.outbox, "kit-test", KafkaSink(infra.kafka))
    stack_cmd("down", "kafka")
    try:
        async with running(relay):
            ids = []
            for i in range(30):
                async with scratch.db.uow() as session:
                    envelope = await outbox.add(session, topic, f"k{i % 5}", {"i": i})
                    ids.append(str(envelope.event_id))
            await asyncio.sleep(3)  # the relay fails and backs off meanwhile
            async with scratch.db.uow() as session:
                pending = (
                    await session.execute(
                        select(func.count())
                        .select_from(scratch.outbox)
                        .where(scratch.outbox.c.published_at.is_(None))
                    )
                ).scalar()
            assert pending == 30
            stack_cmd("up", "kafka")
            records = await consume(infra, topic, 30, timeout=90)
    finally:
        stack_cmd("up", "kafka")
    seen = [json.loads(r.value)["event_id"] for r in records]  # type: ignore[attr-defined]
    assert sorted(seen) == sorted(ids)  # every event, each exactly once


class SlowRecordingSink:
    """A sink that takes its time, as a broker under load does, and remembers the
    order in which rows were delivered (shared between relays)."""

    def __init__(self, delivered: list[tuple[str, int]], delay: float) -> None:
        self.delivered = delivered
        self.delay = delay

    async def publish(self, rows: Sequence[Any]) -> None:
        await asyncio.sleep(self.delay)
        self.delivered.extend((r.key, r.payload["data"]["n"]) for r in rows)

    async def close(self) -> None:
        return None


async def test_several_relays_share_the_work_and_keep_each_keys_events_in_order(
    scratch: Scratch,
) -> None:
    outbox = Outbox(scratch.outbox, "kit-test")
    keys = [f"wallet-{i}" for i in range(12)]
    async with scratch.db.uow() as session:
        for n in range(600):
            await outbox.add(session, "test.order", keys[n % len(keys)], {"n": n})
    delivered: list[tuple[str, int]] = []
    relays = [
        OutboxRelay(
            scratch.db,
            scratch.outbox,
            f"relay-{i}",
            SlowRecordingSink(delivered, 0.05),
            batch_size=40,
        )
        for i in range(3)
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        for _ in range(200):
            if len(delivered) >= 600:
                break
            await asyncio.sleep(0.1)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(n for _, n in delivered) == list(range(600))  # each once
    for key in keys:
        seen = [n for k, n in delivered if k == key]
        assert seen == sorted(seen), key  # in commit order, whichever relay sent them
    async with scratch.db.uow() as session:
        left = (await session.execute(select(func.count()).select_from(scratch.outbox))).scalar()
    assert left == 0  # delivered rows are gone: nothing to prune, nothing to scan


async def test_only_a_commit_that_wrote_its_table_wakes_a_relay(scratch: Scratch) -> None:
    woken: list[str] = []
    scratch.db.on_commit(scratch.outbox.name, lambda: woken.append("outbox"))
    async with scratch.db.uow() as session:
        await session.execute(insert(scratch.things).values(id=99, name="no event"))
    assert woken == []
    async with scratch.db.uow() as session:
        await Outbox(scratch.outbox, "kit-test").add(session, "t", "k", {})
    assert woken == ["outbox"]


async def test_each_keys_events_reach_kafka_in_commit_order_across_concurrent_commits(
    scratch: Scratch, infra: Infra
) -> None:
    # Issue 20.11: through the real broker, with every event in a commit of its own and
    # the commits of different keys racing (as wallets' transfers do); one key's commits
    # are serialised, as a wallet's row lock serialises its changes. It caught a defect
    # the recording-sink test could not: a relay claimed a later row of a shard whose
    # earlier rows it had skipped while another relay held the shard (3 failures in 12
    # runs); the shard locks are now taken before the rows are read.
    topic = f"test.order.{uuid.uuid4().hex[:8]}"
    outbox = Outbox(scratch.outbox, "kit-test")
    keys = [f"wallet-{i}" for i in range(8)]
    per_key = 40
    locks = {k: asyncio.Lock() for k in keys}
    counters = dict.fromkeys(keys, 0)

    async def writer(key: str) -> None:
        for _ in range(per_key):
            async with locks[key], scratch.db.uow() as session:
                n = counters[key]
                counters[key] += 1
                await outbox.add(session, topic, key, {"n": n})

    relays = [
        OutboxRelay(scratch.db, scratch.outbox, f"relay-{i}", KafkaSink(infra.kafka), batch_size=7)
        for i in range(3)
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        # Two writers per key: commits of one key interleave with every other key's.
        await asyncio.gather(*(writer(k) for k in keys for _ in range(2)))
        records = await consume(infra, topic, len(keys) * per_key * 2)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for key in keys:
        seen = [
            json.loads(r.value)["data"]["n"]  # type: ignore[attr-defined]
            for r in records
            if r.key == key.encode()  # type: ignore[attr-defined]
        ]
        assert seen == list(range(per_key * 2)), key  # each once, in commit order


async def test_a_relay_in_another_process_is_woken_by_the_commit_not_its_poll(
    scratch: Scratch, infra: Infra
) -> None:
    # PAYSYS_RELAYS=apart: the writer's commit sends a NOTIFY (RelayNudge); the relay's
    # own connection LISTENs (listen_for_nudges) and pokes it. Its poll here is a
    # minute, so only the NOTIFY can bring the events out within seconds, and two
    # bursts of commits wake it twice (the nudge's pause between sends is 0.2 s).
    elsewhere = Database(infra.database_url, scratch.db.schema, 2)
    delivered: list[tuple[str, int]] = []
    relay = OutboxRelay(
        elsewhere,
        scratch.outbox,
        "relay-apart",
        SlowRecordingSink(delivered, 0),
        idle_poll_seconds=60,
        linger_seconds=0.01,
    )
    nudge = RelayNudge(scratch.db, every=0.2)
    scratch.db.on_commit(scratch.outbox.name, nudge.hook(scratch.outbox.name))

    async def connect() -> Any:
        return await asyncpg.connect(infra.database_url.replace("+asyncpg", ""))

    outbox = Outbox(scratch.outbox, "kit-test")
    ear = asyncio.create_task(
        listen_for_nudges(connect, wake_channel(scratch.db.schema), {scratch.outbox.name: relay})
    )
    try:
        async with running(relay):
            await asyncio.sleep(0.5)  # listening, and the relay's first (empty) read done
            for burst in range(2):
                for n in range(5):
                    async with scratch.db.uow() as session:
                        await outbox.add(session, "test.wake", "k", {"n": burst * 5 + n})
                for _ in range(30):
                    if len(delivered) == 5 * (burst + 1):
                        break
                    await asyncio.sleep(0.1)
                assert sorted(n for _, n in delivered) == list(range(5 * (burst + 1)))
    finally:
        ear.cancel()
        await asyncio.gather(ear, return_exceptions=True)
        await nudge.close()
        await elsewhere.dispose()
