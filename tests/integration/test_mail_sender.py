"""The mail sender's round (claim, send, record) against a real PostgreSQL schema of the
notifications' tables and the test relay in front of Mailpit: what a batch leaves in
email_jobs when it could not send every email."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from paysys.kit.db import Database
from paysys.kit.records import Records
from paysys.notifications.models import Base, records_outbox
from paysys.notifications.settings import NotificationsSettings
from paysys.notifications.tasks import MailSender
from paysys_dev import inbox
from tests.conftest import Infra, free_port
from tests.integration.conftest import schema_of
from tests.support.smtp_relay import smtp_relay


@dataclass(frozen=True)
class Relay:
    port: int
    control: Path


@pytest.fixture(scope="module")
def relay(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    port, control = free_port(), tmp_path_factory.mktemp("relay")
    with smtp_relay(port, control, infra.mailpit_smtp):
        yield Relay(port, control)


@pytest.fixture
async def schema(infra: Infra) -> AsyncIterator[tuple[Database, str]]:
    async with schema_of(infra, Base.metadata, "notif", pool_size=2, drop=True) as made:
        yield made


async def test_emails_a_batch_left_untried_keep_their_attempt_and_are_due_at_once(
    infra: Infra, relay: Relay, schema: tuple[Database, str]
) -> None:
    """A batch begins no email once its claim could run out before the email is through:
    those are not failures of theirs. They were counted as failed attempts with backoff,
    and in a chaos run with a short sending window 41 emails spent all their attempts so
    and waited minutes."""
    db, name = schema
    # A claim one second longer than an email's worst case: a one-second sending window.
    s = NotificationsSettings.model_validate(
        {
            "env": "test",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(relay.port),
            "smtp_timeout_seconds": 5,
            "smtp_accept_timeout_seconds": 5,
            "mail_claim_seconds": 26,
            "mail_batch_size": 3,
        }
    )
    user = uuid.uuid4()
    to = f"untried-{user.hex[:10]}@example.com"
    conn = await asyncpg.connect(infra.dsn, server_settings={"search_path": name})
    try:
        await conn.execute(
            "INSERT INTO recipients (user_id, email_sealed, full_name_sealed, key_id) "
            "VALUES ($1, $2, $3, $4)",
            user,
            s.cipher.seal(to, f"recipients.email:{user}"),
            s.cipher.seal("Una Tried", f"recipients.full_name:{user}"),
            s.cipher.current,
        )
        for n in range(3):
            await conn.execute(
                "INSERT INTO email_jobs (event_id, user_id, kind, subject, body, status, "
                "attempts, next_attempt_at) VALUES ($1, $2, 'welcome', $3, 'hello', "
                "'pending', 0, now() - make_interval(secs => $4))",
                uuid.uuid4(),
                user,
                f"email {n}",
                10.0 - n,  # claimed in this order
            )
        sender = MailSender(db, Records(records_outbox), s)
        (relay.control / ".slow").write_text("1.5")  # seconds per email's text
        try:
            assert await sender.run_once() == 3
        finally:
            (relay.control / ".slow").unlink()
            sender._drop_pipe()
        jobs = await conn.fetch(
            "SELECT subject, status, attempts, last_error, next_attempt_at <= now() AS due "
            "FROM email_jobs ORDER BY id"
        )
    finally:
        await conn.close()
    # the first two were begun in the window (the second pipelined behind the first's
    # text); the third was not tried: pending, its attempt given back, due now
    assert [(j["status"], j["attempts"]) for j in jobs] == [
        ("sent", 1),
        ("sent", 1),
        ("pending", 0),
    ]
    assert jobs[2]["due"] is True
    assert jobs[2]["last_error"] is None
    assert len(inbox.to(infra.inbox, to)) == 2
