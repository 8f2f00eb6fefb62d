"""The outbox relay against the real Kafka broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, insert, select

from paysys.kit.context import bind_request
from paysys.kit.outbox import KafkaSink, Outbox, OutboxRelay
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
