"""The mail sender's pipelining SMTP client against the real SMTP server (Mailpit,
behind the test relay that fails on demand): each email's own outcome in a batch, the
text as sent, and a dead connection noticed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import pytest
import uvloop

from paysys.notifications.smtp import NotTried, PipelinedSMTP
from paysys_dev import inbox
from tests.conftest import Infra, free_port
from tests.support.smtp_relay import smtp_relay

SENDER = "no-reply@paysys.local"


def message(to: str, body: str) -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: t\r\n\r\n{body}\r\n".encode()


@dataclass(frozen=True)
class Relay:
    """A test relay of this module's own, in front of the stack's Mailpit: its switch
    files (.fail, .fail-rcpt, .bounce-rcpt) then touch no mail the running services send."""

    host: str
    port: int
    control: Path
    inbox: str

    def delivered(self, to: str) -> list[bytes]:
        return inbox.to(self.inbox, to)


@pytest.fixture(scope="module")
def sink(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    port, control = free_port(), tmp_path_factory.mktemp("relay")
    with smtp_relay(port, control, infra.mailpit_smtp):
        yield Relay("127.0.0.1", port, control, infra.inbox)


@pytest.fixture
async def smtp(sink: Relay) -> AsyncIterator[PipelinedSMTP]:
    client = PipelinedSMTP(sink.host, sink.port)
    assert await client.connect() is True  # the sink pipelines
    try:
        yield client
    finally:
        client.close()


def addresses(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:10]
    return [f"p{i}-{tag}@example.com" for i in range(n)]


async def test_a_batch_gives_each_email_its_own_outcome(smtp: PipelinedSMTP, sink: Relay) -> None:
    ok1, bounced, later, ok2 = addresses(4)
    (sink.control / ".bounce-rcpt").write_text(bounced + "\n")
    (sink.control / ".fail-rcpt").write_text(later + "\n")
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
        (sink.control / ".bounce-rcpt").unlink()
        (sink.control / ".fail-rcpt").unlink()
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], aiosmtplib.SMTPRecipientsRefused)
    assert results[1].recipients[0].code == 550
    assert isinstance(results[2], aiosmtplib.SMTPRecipientsRefused)
    assert results[2].recipients[0].code == 451
    assert sink.delivered(bounced) == sink.delivered(later) == []
    (first,) = sink.delivered(ok1)
    # the text arrives as written: CRLF line ends, leading periods un-doubled
    assert first.endswith(b"\r\n\r\none\r\n.leading period\r\n..two\r\n")
    assert len(sink.delivered(ok2)) == 1


async def test_a_refused_text_is_that_emails_failure_only(smtp: PipelinedSMTP, sink: Relay) -> None:
    a, b = addresses(2)
    (sink.control / ".fail").write_text("")
    try:
        results = await smtp.send_many(SENDER, [(a, message(a, "x")), (b, message(b, "y"))])
    finally:
        (sink.control / ".fail").unlink()
    assert [type(r) for r in results] == [aiosmtplib.SMTPDataError] * 2
    assert [r.code for r in results if isinstance(r, aiosmtplib.SMTPDataError)] == [451, 451]
    # the connection is still good for the next batch
    assert await smtp.send_many(SENDER, [(a, message(a, "z"))]) == [None]
    assert len(sink.delivered(a)) == 1


async def test_a_closed_connection_raises_and_sends_nothing(
    smtp: PipelinedSMTP, sink: Relay
) -> None:
    (a,) = addresses(1)
    smtp.close()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.send_many(SENDER, [(a, message(a, "x"))])
    assert smtp.done == [] and not smtp.wrote_text
    assert sink.delivered(a) == []


async def test_on_uvloop_as_the_services_run_it(sink: Relay) -> None:
    (a,) = addresses(1)

    async def send() -> list[BaseException | None]:
        client = PipelinedSMTP(sink.host, sink.port)
        try:
            assert await client.connect() is True
            return await client.send_many(SENDER, [(a, message(a, "on uvloop"))])
        finally:
            client.close()

    assert await asyncio.to_thread(uvloop.run, send()) == [None]
    assert len(sink.delivered(a)) == 1


async def test_a_batch_past_its_deadline_sends_no_further_email(
    smtp: PipelinedSMTP, sink: Relay
) -> None:
    """A sender's claim on its batch runs out at some time: an email started after the
    batch's deadline could still be in flight when another sender takes the batch over,
    and go twice. The emails past it are not tried (they go with a later claim)."""
    a, b, c = addresses(3)
    (sink.control / ".slow").write_text("1.5")  # seconds per email
    try:
        loop = asyncio.get_running_loop()
        results = await smtp.send_many(
            SENDER,
            [(a, message(a, "1")), (b, message(b, "2")), (c, message(c, "3"))],
            deadline=loop.time() + 1.0,
        )
    finally:
        (sink.control / ".slow").unlink()
    # b was begun before the deadline (pipelined with a's text), so it goes through;
    # c would have begun after it
    assert results[:2] == [None, None]
    assert [type(r) for r in results[2:]] == [NotTried]
    assert len(sink.delivered(a)) == len(sink.delivered(b)) == 1
    assert sink.delivered(c) == []
    # the connection is still good for the next batch
    assert await smtp.send_many(SENDER, [(c, message(c, "again"))]) == [None]
