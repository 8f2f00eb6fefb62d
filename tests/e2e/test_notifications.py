"""The notifications service against real Kafka and SMTP: once per event, retries."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from paysys.kit.mongo import make_mongo
from tests.conftest import Stack, eventually, stack_cmd, unique_email
from tests.e2e.helpers import kafka_event, mails_to, register


async def test_redelivered_event_sends_no_second_email(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user = await register(api, unique_email("redeliver"))
    event = await kafka_event(stack, "user.registered", user["id"])

    async def one_mail() -> list[object]:
        return mails_to(stack.infra.inbox, user["email"])

    await eventually(one_mail, timeout=60)
    # Three redeliveries, then a marker on the same partition (the same key): a new
    # user's registration, whose email proves everything before it was handled.
    marker_email = unique_email("marker")
    marker = {
        **event,
        "event_id": str(uuid.uuid4()),
        "data": {**event["data"], "user_id": str(uuid.uuid4()), "email": marker_email},
    }
    producer = AIOKafkaProducer(bootstrap_servers=stack.infra.kafka)
    await producer.start()
    try:
        for value in (event, event, event, marker):
            await producer.send_and_wait(
                "user.registered", json.dumps(value).encode(), key=user["id"].encode()
            )
    finally:
        await producer.stop()
    await eventually(lambda: _mail(stack, marker_email), timeout=60)
    assert len(mails_to(stack.infra.inbox, user["email"])) == 1
    jobs = await db_rows(
        stack,
        "SELECT count(*) AS n FROM notifications.email_jobs WHERE user_id = $1",
        uuid.UUID(user["id"]),
    )
    assert jobs[0]["n"] == 1

    async def recorded() -> int:
        client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
        try:
            return await db.notifications.count_documents({"user_id": user["id"]})
        finally:
            await client.close()

    assert await eventually(recorded, timeout=30) == 1


async def test_a_server_slow_to_accept_an_email_gets_it_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    """A server may take its time to answer an email's text (RFC 5321 gives it ten
    minutes): it has the email by then. A sender that gave up after 10 s sent it again,
    and the server delivered it twice (seen after a cold start of Mailpit)."""
    slow = stack.infra.smtp_control / ".slow"
    slow.write_text("12")  # seconds
    try:
        user = await register(api, unique_email("slow-server"))
        conn = await asyncpg.connect(stack.infra.dsn)
        try:

            async def done() -> Any:
                return await conn.fetchrow(
                    "SELECT status, attempts FROM notifications.email_jobs"
                    " WHERE user_id = $1 AND status NOT IN ('pending', 'sending')",
                    uuid.UUID(user["id"]),
                )

            job = await eventually(done, timeout=90)
        finally:
            await conn.close()
    finally:
        slow.unlink(missing_ok=True)
    assert (job["status"], job["attempts"]) == ("sent", 1)
    assert len(mails_to(stack.infra.inbox, user["email"])) == 1


async def test_smtp_failure_is_retried_then_recorded_failed_without_blocking_others(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    refused, fine = unique_email("refused"), unique_email("fine")
    fail_file = stack.infra.smtp_control / ".fail-rcpt"
    fail_file.write_text(refused + "\n")
    try:
        bad = await register(api, refused)
        await register(api, fine)

        async def fine_mail() -> list[object]:
            return mails_to(stack.infra.inbox, fine)

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
        assert mails_to(stack.infra.inbox, refused) == []
    finally:
        fail_file.unlink(missing_ok=True)


async def test_a_job_that_cannot_be_sent_is_parked_failed_and_blocks_nothing(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # A job as an older release could write it: a request id with a byte that an email
    # header refuses. It must fail alone, at once, with its reason.
    poisoned = await register(api, unique_email("poisoned-job"))
    await eventually(lambda: _mail(stack, poisoned["email"]), timeout=60)
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        job_id = await conn.fetchval(
            "INSERT INTO notifications.email_jobs (event_id, user_id, kind, subject, body,"
            " status, attempts, correlation_id) VALUES ($1, $2, 'welcome', 'Hi\\u0085', 'x',"
            " 'pending', 0, $3) RETURNING id",
            uuid.uuid4(),
            uuid.UUID(poisoned["id"]),
            "a\x85b",
        )
        await conn.execute(
            "UPDATE notifications.email_jobs SET subject = $1 WHERE id = $2",
            "line\nbreak\x85",
            job_id,
        )
        later = await register(api, unique_email("after-poisoned-job"))
        await eventually(lambda: _mail(stack, later["email"]), timeout=60)

        row = await failed_job(conn, job_id)
        assert row["attempts"] == 1  # no retries: it would fail the same way again
        assert row["last_error"]
    finally:
        await conn.close()


async def test_a_permanent_smtp_refusal_fails_the_job_at_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    bounced = unique_email("bounce")
    bounce_file = stack.infra.smtp_control / ".bounce-rcpt"
    bounce_file.write_text(bounced + "\n")
    try:
        user = await register(api, bounced)
        client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
        try:

            async def failed_doc() -> dict | None:  # type: ignore[type-arg]
                return await db.notifications.find_one(
                    {"user_id": user["id"], "kind": "welcome", "status": "failed"}
                )

            doc = await eventually(failed_doc, timeout=60)
            assert doc["attempts"] == 1
            assert "550" in doc["error"]
            # The refusal names the recipient; what is stored and logged of it does not
            # (finding 19.6).
            assert bounced not in doc["error"]
            [job] = await db_rows(
                stack,
                "SELECT last_error FROM notifications.email_jobs WHERE user_id = $1",
                uuid.UUID(user["id"]),
            )
            assert "550" in job["last_error"] and bounced not in job["last_error"]
            log = (stack.log_dir / "notifications.log").read_text(errors="replace")
            assert any("email_failed" in line and "550" in line for line in log.splitlines())
            assert bounced not in log
        finally:
            await client.close()
    finally:
        bounce_file.unlink(missing_ok=True)


async def test_a_recipient_that_cannot_be_decrypted_fails_its_job_alone(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # Finding 19.8: a recipient row sealed for another user (its associated data no
    # longer matches) once raised outside the per-job handling and stalled its batch.
    damaged = await register(api, unique_email("undecryptable"))
    donor = await register(api, unique_email("donor"))
    await eventually(lambda: _mail(stack, damaged["email"]), timeout=60)
    await eventually(lambda: _mail(stack, donor["email"]), timeout=60)
    conn = await asyncpg.connect(stack.infra.dsn)
    original = await conn.fetchval(
        "SELECT email_sealed FROM notifications.recipients WHERE user_id = $1",
        uuid.UUID(damaged["id"]),
    )
    try:
        await conn.execute(
            "UPDATE notifications.recipients SET email_sealed ="
            " (SELECT email_sealed FROM notifications.recipients WHERE user_id = $2)"
            " WHERE user_id = $1",
            uuid.UUID(damaged["id"]),
            uuid.UUID(donor["id"]),
        )
        job_id = await conn.fetchval(
            "INSERT INTO notifications.email_jobs (event_id, user_id, kind, subject, body,"
            " status, attempts, correlation_id) VALUES ($1, $2, 'welcome', 'Hi', 'x',"
            " 'pending', 0, NULL) RETURNING id",
            uuid.uuid4(),
            uuid.UUID(damaged["id"]),
        )
        later = await register(api, unique_email("after-undecryptable"))
        await eventually(lambda: _mail(stack, later["email"]), timeout=60)

        row = await failed_job(conn, job_id)
        assert row["attempts"] == 1
        assert "cannot be decrypted" in row["last_error"]
        assert donor["email"] not in row["last_error"]
    finally:
        # The damage is this test's alone: key rotation, later, reads every row.
        await conn.execute(
            "UPDATE notifications.recipients SET email_sealed = $2 WHERE user_id = $1",
            uuid.UUID(damaged["id"]),
            original,
        )
        await conn.close()


async def db_rows(stack: Stack, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@pytest.mark.disruptive
async def test_an_email_sent_while_mongodb_is_down_is_sent_once_and_recorded_later(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    stack_cmd("down", "mongodb")
    try:
        user = await register(api, unique_email("mongo-down-mail"))
        await eventually(lambda: _mail(stack, user["email"]), timeout=60)
        await asyncio.sleep(8)  # several sender rounds while MongoDB is still down
        assert len(mails_to(stack.infra.inbox, user["email"])) == 1
    finally:
        stack_cmd("up", "mongodb")
    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:

        async def recorded() -> int:
            return await db.notifications.count_documents(
                {"user_id": user["id"], "kind": "welcome", "status": "sent"}
            )

        await eventually(recorded, timeout=60, interval=1)
    finally:
        await client.close()
    assert len(mails_to(stack.infra.inbox, user["email"])) == 1


async def _mail(stack: Stack, address: str) -> list[object]:
    return mails_to(stack.infra.inbox, address)


async def failed_job(conn: asyncpg.Connection, job_id: int) -> Any:
    """The email job once it is parked as failed (waits for it)."""

    async def parked() -> Any:
        row = await conn.fetchrow(
            "SELECT status, attempts, last_error FROM notifications.email_jobs WHERE id = $1",
            job_id,
        )
        return row if row["status"] == "failed" else None

    return await eventually(parked, timeout=30)
