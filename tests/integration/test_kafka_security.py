"""Kafka's connection security and topic durability (issue 25.7), against the local
broker's TLS+SASL listener (infra/stack.sh): the outbox relay publishes and a consumer
reads through it with the right password and a trusted certificate, and through nothing
else; the topics the services create carry the replication settings asked for."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.consumer import EventConsumer, ensure_topics
from paysys.kit.events import EventEnvelope
from paysys.kit.outbox import KafkaSink, Outbox, OutboxRelay
from paysys.kit.settings import KitSettings
from tests.conftest import Infra, eventually
from tests.integration.conftest import Scratch


def secure(infra: Infra, **overrides: Any) -> KitSettings:
    env = infra.env
    values: dict[str, Any] = {
        "env": "test",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": env["KAFKA_SASL_USER"],
        "kafka_sasl_password": env["KAFKA_SASL_PASSWORD"],
        "kafka_ca_file": env["KAFKA_CA_FILE"],
        **overrides,
    }
    return KitSettings.model_validate(values)


async def test_events_go_out_and_come_in_over_tls_with_sasl(scratch: Scratch, infra: Infra) -> None:
    servers, s = infra.env["KAFKA_SASL_SSL_SERVERS"], secure(infra)
    topic = f"test.secure.{uuid.uuid4().hex[:8]}"
    await ensure_topics(servers, [topic], options=s.kafka_options())
    relay = OutboxRelay(
        scratch.db, scratch.outbox, "kit-test", KafkaSink(servers, options=s.kafka_options())
    )
    async with scratch.db.uow() as session:
        envelope = await Outbox(scratch.outbox, "kit-test").add(session, topic, "k", {"n": 1})
    handled: list[str] = []

    async def handler(session: AsyncSession, envelopes: list[EventEnvelope]) -> None:
        handled.extend(str(e.event_id) for e in envelopes)

    consumer = EventConsumer(
        scratch.db,
        scratch.inbox,
        f"test-{uuid.uuid4().hex[:6]}",
        [topic],
        handler,
        servers,
        options=s.kafka_options(),
    )
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    try:
        await eventually(lambda: _has(handled, str(envelope.event_id)), timeout=60)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    async with scratch.db.uow() as session:
        unpublished = await session.scalar(
            select(func.count())
            .select_from(scratch.outbox)
            .where(scratch.outbox.c.published_at.is_(None))
        )
    assert unpublished == 0


async def _has(handled: list[str], event_id: str) -> bool:
    return event_id in handled


@pytest.mark.parametrize(
    "wrong",
    [
        {"kafka_sasl_password": "not the password"},
        {"kafka_ca_file": None},  # the system's CAs: the local CA is not one of them
        {"kafka_security_protocol": "SASL_PLAINTEXT"},  # TLS expected, clear text sent
    ],
    ids=["wrong password", "untrusted certificate", "no TLS"],
)
async def test_a_wrong_credential_or_certificate_gets_no_connection(
    infra: Infra, wrong: dict[str, Any]
) -> None:
    servers, s = infra.env["KAFKA_SASL_SSL_SERVERS"], secure(infra, **wrong)
    sink = KafkaSink(servers, options=s.kafka_options())
    with pytest.raises((KafkaError, OSError)):
        await asyncio.wait_for(sink._ready(), 30)
    await sink.close()


async def test_topics_are_created_with_the_replication_asked_for(infra: Infra) -> None:
    topic = f"test.durable.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra.kafka, [topic], replication_factor=1, min_insync_replicas=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
    await admin.start()
    try:
        [config] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        values = {entry[0]: entry[1] for entry in config.resources[0][4]}
        assert values["min.insync.replicas"] == "1"
    finally:
        await admin.close()
    # Three replicas on a one-broker cluster: refused, and said, not taken for a race.
    with pytest.raises(RuntimeError, match="refused to create topics"):
        await ensure_topics(infra.kafka, [f"{topic}.x"], replication_factor=3)


def test_settings_that_would_lose_a_password_or_an_event_are_refused() -> None:
    production = {"env": "production", "jwt_secret": "j" * 32, "internal_token": "i" * 32}
    with pytest.raises(ValueError, match="SASL PLAIN needs TLS"):
        KitSettings.model_validate(
            {
                **production,
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
            }
        )
    with pytest.raises(ValueError, match="MIN_INSYNC"):
        KitSettings.model_validate(
            {**production, "kafka_replication_factor": 1, "kafka_min_insync_replicas": 2}
        )
    ok = KitSettings.model_validate(
        {**production, "kafka_replication_factor": 3, "kafka_min_insync_replicas": 2}
    )
    assert ok.kafka_options() == {"security_protocol": "PLAINTEXT"}
