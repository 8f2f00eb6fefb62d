"""The consumer base dedupes by event_id, through the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.consumer import EventConsumer
from paysys.kit.events import EventEnvelope
from tests.conftest import Infra, eventually
from tests.integration.conftest import Scratch


async def test_same_event_delivered_twice_is_handled_once(scratch: Scratch, infra: Infra) -> None:
    topic = f"test.inbox.{uuid.uuid4().hex[:8]}"
    handled: list[str] = []

    async def handler(session: AsyncSession, envelopes: list[EventEnvelope]) -> None:
        for envelope in envelopes:
            await session.execute(insert(scratch.things).values(name=str(envelope.event_id)[:50]))
            handled.append(str(envelope.event_id))

    twice = EventEnvelope(event_type=topic, producer="test", data={"x": 1})
    once = EventEnvelope(event_type=topic, producer="test", data={"x": 2})
    # After the duplicates, on the same partition (one key): once the marker is handled,
    # everything before it was, and no timer decides when to count.
    marker = EventEnvelope(event_type=topic, producer="test", data={"marker": True})
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await producer.start()
    try:
        for env in (twice, twice, once, twice, marker):
            await producer.send_and_wait(
                topic, json.dumps(env.model_dump(mode="json")).encode(), key=b"one-key"
            )
    finally:
        await producer.stop()

    consumer = EventConsumer(
        scratch.db, scratch.inbox, f"test-{uuid.uuid4().hex[:6]}", [topic], handler, infra.kafka
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _done(handled, str(marker.event_id)), timeout=60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert handled == [str(twice.event_id), str(once.event_id), str(marker.event_id)]


async def _done(handled: list[str], marker: str) -> bool:
    return marker in handled


async def test_a_stopping_consumer_finishes_its_batch_commits_and_leaves_its_group(
    scratch: Scratch, infra: Infra
) -> None:
    # Issue 25.3: SIGTERM cancels the consumer's task while it handles a batch. The batch
    # is handled and committed all the same, then the consumer leaves its group, so that
    # its partitions go elsewhere at once and nothing is handled twice.
    topic = f"test.stop.{uuid.uuid4().hex[:8]}"
    group = f"test-stop-{uuid.uuid4().hex[:6]}"
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[str] = []

    async def handler(session: AsyncSession, envelopes: list[EventEnvelope]) -> None:
        started.set()
        await release.wait()  # still handling when the stop comes
        handled.extend(str(e.event_id) for e in envelopes)

    event = EventEnvelope(event_type=topic, producer="test", data={"x": 1})
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, json.dumps(event.model_dump(mode="json")).encode())
    finally:
        await producer.stop()
    consumer = EventConsumer(scratch.db, scratch.inbox, group, [topic], handler, infra.kafka)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), 60)
    task.cancel()
    await asyncio.sleep(0.2)
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert handled == [str(event.event_id)]
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    assert [o.offset for o in committed.values()] == [1]  # the batch, committed
    # (error_code, group_id, state, protocol_type, protocol, members, ...)
    [described] = response.groups
    assert (described[1], described[2], described[5]) == (group, "Empty", [])  # it left


async def test_a_consumer_does_not_read_again_what_it_committed_when_its_group_lost_it(
    scratch: Scratch, infra: Infra
) -> None:
    # After a Kafka restart, a two-instance chaos run's notifications consumer read its
    # topics from the earliest offset: its group's committed offsets were not found (a
    # broker still loading them), and a consumer that finds none starts from the
    # earliest. The inbox drops every duplicate, but the whole retention is fetched and
    # decoded again. Here the group's offsets go back to the start while the consumer is
    # down (its connection failed): what it committed itself, it skips.
    topic = f"test.reread.{uuid.uuid4().hex[:8]}"
    group = f"test-reread-{uuid.uuid4().hex[:6]}"
    seen: list[str] = []  # every event the consumer passed on to be handled

    class Spy(EventConsumer):
        async def handle_batch(self, envelopes: list[EventEnvelope]) -> None:
            seen.extend(str(e.event_id) for e in envelopes)
            await super().handle_batch(envelopes)

    async def handler(session: AsyncSession, envelopes: list[EventEnvelope]) -> None:
        return None

    async def send(events: list[EventEnvelope]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
        await producer.start()
        try:
            for e in events:
                body = json.dumps(e.model_dump(mode="json")).encode()
                await producer.send_and_wait(topic, body, key=b"one-key")
        finally:
            await producer.stop()

    first = [EventEnvelope(event_type=topic, producer="test", data={"n": n}) for n in range(5)]
    later = [EventEnvelope(event_type=topic, producer="test", data={"n": n}) for n in range(2)]
    await send(first)
    consumer = Spy(scratch.db, scratch.inbox, group, [topic], handler, infra.kafka)

    async def through(event: EventEnvelope) -> bool:
        return str(event.event_id) in seen

    async def run_until(event: EventEnvelope) -> None:
        """Runs the consumer until it passed `event` on, then stops it."""
        task = asyncio.create_task(consumer.run())
        try:
            await eventually(lambda: through(event), timeout=60)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    await run_until(first[-1])
    # The group's offsets back to the start, as a group whose offsets were not found.
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert [o.offset for o in committed.values()] == [len(first)]
    rewind = AIOKafkaConsumer(bootstrap_servers=infra.kafka, group_id=group)
    await rewind.start()
    try:
        rewind.assign(list(committed))
        await rewind.commit({tp: 0 for tp in committed})
    finally:
        await rewind.stop()
    await send(later)
    await run_until(later[-1])
    assert seen == [str(e.event_id) for e in first + later]
