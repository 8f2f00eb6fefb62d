"""The notifications service against real Kafka and SMTP: once per event, retries."""

from __future__ import annotations

import asyncio
import json

import httpx
from aiokafka import AIOKafkaProducer

from paysys.kit.mongo import make_mongo
from tests.conftest import Stack, eventually, unique_email
from tests.e2e.helpers import kafka_event, mails_to, register


async def test_redelivered_event_sends_no_second_email(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user = await register(api, unique_email("redeliver"))
    event = await kafka_event(stack, "user.registered", user["id"])

    async def one_mail() -> list[object]:
        return mails_to(stack.infra.mail_dir, user["email"])

    await eventually(one_mail, timeout=60)
    producer = AIOKafkaProducer(bootstrap_servers=stack.infra.kafka)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(
                "user.registered", json.dumps(event).encode(), key=user["id"].encode()
            )
    finally:
        await producer.stop()
    await asyncio.sleep(4)
    assert len(mails_to(stack.infra.mail_dir, user["email"])) == 1
    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:
        assert await db.notifications.count_documents({"user_id": user["id"]}) == 1
    finally:
        await client.close()


async def test_smtp_failure_is_retried_then_recorded_failed_without_blocking_others(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    refused, fine = unique_email("refused"), unique_email("fine")
    fail_file = stack.infra.mail_dir / ".fail-rcpt"
    fail_file.write_text(refused + "\n")
    try:
        bad = await register(api, refused)
        await register(api, fine)

        async def fine_mail() -> list[object]:
            return mails_to(stack.infra.mail_dir, fine)

        await eventually(fine_mail, timeout=60)
        client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
        try:

            async def failed_doc() -> dict | None:  # type: ignore[type-arg]
                return await db.notifications.find_one(
                    {"user_id": bad["id"], "kind": "welcome", "status": "failed"}
                )

            doc = await eventually(failed_doc, timeout=60)
            assert doc["attempts"] == 3  # PAYSYS_MAIL_MAX_ATTEMPTS in the test env
            assert "451" in doc["error"]
        finally:
            await client.close()
        assert mails_to(stack.infra.mail_dir, refused) == []
    finally:
        fail_file.unlink(missing_ok=True)
