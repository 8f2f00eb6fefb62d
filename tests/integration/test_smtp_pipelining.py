"""The mail sender's pipelining SMTP client against the real SMTP sink: each email's
own outcome in a batch, the text as sent, and a dead connection noticed."""

from __future__ import annotations

import asyncio
import email
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest
import uvloop

from paysys.notifications.smtp import PipelinedSMTP
from tests.conftest import Infra

SENDER = "no-reply@paysys.local"


def message(to: str, body: str) -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: t\r\n\r\n{body}\r\n".encode()


def delivered(mail_dir: Path, to: str) -> list[bytes]:
    return [
        p.read_bytes()
        for p in mail_dir.glob("*.eml")
        if email.message_from_bytes(p.read_bytes())["To"] == to
    ]


@pytest.fixture
async def smtp(infra: Infra) -> AsyncIterator[PipelinedSMTP]:
    client = PipelinedSMTP(infra.env["SMTP_HOST"], int(infra.env["SMTP_PORT"]))
    assert await client.connect() is True  # the sink pipelines
    try:
        yield client
    finally:
        client.close()


def addresses(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:10]
    return [f"p{i}-{tag}@example.com" for i in range(n)]


async def test_a_batch_gives_each_email_its_own_outcome(smtp: PipelinedSMTP, infra: Infra) -> None:
    ok1, bounced, later, ok2 = addresses(4)
    (infra.mail_dir / ".bounce-rcpt").write_text(bounced + "\n")
    (infra.mail_dir / ".fail-rcpt").write_text(later + "\n")
    try:
        results = await smtp.send_many(
            SENDER,
            [
                (ok1, message(ok1, "one\n.leading period\n..two")),
                (bounced, message(bounced, "never")),
                (later, message(later, "not now")),
                (ok2, message(ok2, "four")),
            ],
        )
    finally:
        (infra.mail_dir / ".bounce-rcpt").unlink()
        (infra.mail_dir / ".fail-rcpt").unlink()
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], aiosmtplib.SMTPRecipientsRefused)
    assert results[1].recipients[0].code == 550
    assert isinstance(results[2], aiosmtplib.SMTPRecipientsRefused)
    assert results[2].recipients[0].code == 451
    assert delivered(infra.mail_dir, bounced) == delivered(infra.mail_dir, later) == []
    (first,) = delivered(infra.mail_dir, ok1)
    # the text arrives as written: CRLF line ends, leading periods un-doubled
    assert first.endswith(b"\r\n\r\none\r\n.leading period\r\n..two\r\n")
    assert len(delivered(infra.mail_dir, ok2)) == 1


async def test_a_refused_text_is_that_emails_failure_only(
    smtp: PipelinedSMTP, infra: Infra
) -> None:
    a, b = addresses(2)
    (infra.mail_dir / ".fail").write_text("")
    try:
        results = await smtp.send_many(SENDER, [(a, message(a, "x")), (b, message(b, "y"))])
    finally:
        (infra.mail_dir / ".fail").unlink()
    assert [type(r) for r in results] == [aiosmtplib.SMTPDataError] * 2
    assert [r.code for r in results if isinstance(r, aiosmtplib.SMTPDataError)] == [451, 451]
    # the connection is still good for the next batch
    assert await smtp.send_many(SENDER, [(a, message(a, "z"))]) == [None]
    assert len(delivered(infra.mail_dir, a)) == 1


async def test_a_closed_connection_raises_and_sends_nothing(
    smtp: PipelinedSMTP, infra: Infra
) -> None:
    (a,) = addresses(1)
    smtp.close()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.send_many(SENDER, [(a, message(a, "x"))])
    assert smtp.done == [] and not smtp.wrote_text
    assert delivered(infra.mail_dir, a) == []


async def test_on_uvloop_as_the_services_run_it(infra: Infra) -> None:
    (a,) = addresses(1)

    async def send() -> list[BaseException | None]:
        client = PipelinedSMTP(infra.env["SMTP_HOST"], int(infra.env["SMTP_PORT"]))
        try:
            assert await client.connect() is True
            return await client.send_many(SENDER, [(a, message(a, "on uvloop"))])
        finally:
            client.close()

    assert await asyncio.to_thread(uvloop.run, send()) == [None]
    assert len(delivered(infra.mail_dir, a)) == 1
