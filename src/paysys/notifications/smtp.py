"""SMTP with PIPELINING (RFC 2920): a batch of emails, one round trip each.

Written here because no asyncio SMTP library pipelines: aiosmtplib sends a command and
waits for its reply, so an email costs four round trips (MAIL, RCPT, DATA, the text),
each one a wakeup of both ends; it was most of the mail sender's CPU. Here the text of
one email travels with the MAIL, RCPT and DATA of the next, and the replies are read
together.

Only what the mail sender needs: EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT (one
recipient), DATA, RSET. Failures are aiosmtplib's exception types, so the sender's
classification (retry or fail) is the same whichever client sent. A server without
PIPELINING, or an address that is not ASCII (SMTPUTF8), goes through aiosmtplib.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from collections import deque
from typing import NamedTuple, cast

from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPDataError,
    SMTPException,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")
_CONTROL = re.compile(r"[\x00-\x1f\x7f<>]")  # never inside an address on a command line
_MAX_REPLY = 64 * 1024


class Reply(NamedTuple):
    code: int
    message: str


class _Replies(asyncio.Protocol):
    """Collects complete replies (multi-line ones joined) in arrival order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.replies: deque[Reply] = deque()
        self.lines: list[str] = []
        self.wanted = 0
        self.waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            line = bytes(self.buffer[: end + 1]).rstrip(b"\r\n")
            del self.buffer[: end + 1]
            if len(line) < 3 or not line[:3].isdigit():
                self._fail(SMTPResponseException(-1, f"malformed reply: {line[:80]!r}"))
                return
            self.lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":  # the last line of this reply
                self.replies.append(Reply(int(line[:3]), "\n".join(self.lines)))
                self.lines = []
        if len(self.buffer) > _MAX_REPLY:
            self._fail(SMTPResponseException(-1, "reply too long"))
        elif self.waiter and not self.waiter.done() and len(self.replies) >= self.wanted:
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(SMTPServerDisconnected(f"connection lost: {exc or 'closed by the server'}"))

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        if self.transport is not None:
            self.transport.close()
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(exc)
            self.waiter.exception()  # retrieved: nobody may await it any more


class NotTried(SMTPException):
    """An email of a batch left unsent: the batch's claim could run out before it is
    through (another sender would take it over and send it again)."""

    @classmethod
    def late(cls) -> NotTried:
        return cls("not tried: the batch's claim could run out first")


class PipelinedSMTP:
    """One kept-open connection to a server that pipelines. `connect` tells whether it
    does; if not, the caller uses another client."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
        accept_timeout: float = 60.0,  # NotificationsSettings' default
    ) -> None:
        # timeout: a connection's, a command's; accept_timeout: the answer to an email's
        # text, which the server may have taken by then (see NotificationsSettings).
        self.host, self.port, self.timeout = host, port, timeout
        self.accept_timeout = accept_timeout
        # tls: STARTTLS is required (a server that does not offer it is refused, never
        # sent credentials or mail in clear); login: AUTH PLAIN, inside that TLS.
        self.tls, self.login = tls, login
        self._replies: _Replies | None = None
        # Of the last send_many: the results so far, and whether any email's text was
        # written (after which a failed batch may have been partly delivered).
        self.done: list[BaseException | None] = []
        self.wrote_text = False

    @property
    def is_connected(self) -> bool:
        r = self._replies
        return r is not None and r.error is None and r.transport is not None

    async def connect(self) -> bool:
        """Connects and says hello; True if the server pipelines."""
        loop = asyncio.get_running_loop()
        _, replies = await asyncio.wait_for(
            loop.create_connection(_Replies, self.host, self.port), self.timeout
        )
        self._replies = replies
        greeting = (await self._read(1))[0]
        if greeting.code != 220:
            raise SMTPResponseException(greeting.code, greeting.message)
        words = await self._hello()
        if self.tls is not None:
            if "STARTTLS" not in words:
                raise SMTPException("the server does not offer STARTTLS")
            await self._command(b"STARTTLS\r\n", 220)
            assert replies.transport is not None
            replies.transport = cast(
                asyncio.Transport,
                await asyncio.wait_for(
                    loop.start_tls(replies.transport, replies, self.tls, server_hostname=self.host),
                    self.timeout,
                ),
            )
            words = await self._hello()  # what it offers may differ inside TLS
        if self.login is not None:
            user, password = self.login
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            self._write(f"AUTH PLAIN {token}\r\n".encode())
            reply = (await self._read(1))[0]
            if reply.code != 235:
                self.close()
                raise SMTPAuthenticationError(reply.code, reply.message)
        return "PIPELINING" in words

    async def _hello(self) -> set[str]:
        self._write(f"EHLO {socket.getfqdn()}\r\n".encode())
        hello = (await self._read(1))[0]
        if hello.code != 250:
            raise SMTPResponseException(hello.code, hello.message)
        return {line.split(" ", 1)[0].upper() for line in hello.message.split("\n")}

    async def _command(self, line: bytes, expected: int) -> None:
        self._write(line)
        reply = (await self._read(1))[0]
        if reply.code != expected:
            raise SMTPResponseException(reply.code, reply.message)

    def close(self) -> None:
        r, self._replies = self._replies, None
        if r is not None and r.transport is not None:
            r.transport.close()

    async def send_many(
        self, sender: str, mails: list[tuple[str, bytes]], deadline: float | None = None
    ) -> list[BaseException | None]:
        """Sends each (recipient, message) and returns, in the same order, None for an
        email the server accepted, or why it did not. Raises if the connection fails;
        emails before that have their results in `self.done`. No email is begun after
        `deadline` (the loop's clock): those are NotTried."""
        self.done, self.wrote_text = [], False
        text: bytes | None = None  # the last accepted email's text: goes with the next
        loop = asyncio.get_running_loop()
        for recipient, message in mails:
            if deadline is not None and loop.time() > deadline:
                break
            if not (address_ok(sender) and address_ok(recipient)):
                raise ValueError("an address with control characters or brackets")
            group = f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()
            if text is not None:
                group = text + group
                self.wrote_text = True
            self._write(group)
            replies = await self._read(3 + (text is not None), text is not None)
            if text is not None:
                self.done.append(_data_end(replies.pop(0)))
            text = None
            mail, rcpt, data = replies
            if data.code == 354:
                if mail.code != 250 or rcpt.code not in (250, 251):
                    # The server would take text it refused a sender or recipient
                    # for: no telling what it would do with it. Give up on it.
                    self.close()
                    raise SMTPResponseException(data.code, "354 after a refusal")
                text = _stuffed(message)
                continue
            if mail.code != 250:
                self.done.append(SMTPSenderRefused(mail.code, mail.message, sender))
            elif rcpt.code not in (250, 251):
                refused = SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)
                self.done.append(SMTPRecipientsRefused([refused]))
            else:
                self.done.append(SMTPDataError(data.code, data.message))
            self._write(b"RSET\r\n")  # a clean transaction for the next email
            await self._read(1)
        if text is not None:
            self.wrote_text = True
            self._write(text)
            self.done.append(_data_end((await self._read(1, True))[0]))
        late = NotTried.late()
        self.done += [late] * (len(mails) - len(self.done))
        return self.done

    def _write(self, data: bytes) -> None:
        r = self._replies
        if r is None or r.error is not None or r.transport is None:
            raise (r.error if r and r.error else SMTPServerDisconnected("not connected"))
        r.transport.write(data)

    async def _read(self, n: int, text_end: bool = False) -> list[Reply]:
        """The next `n` replies; `text_end`: one answers an email's text."""
        r = self._replies
        if r is None:
            raise SMTPServerDisconnected("not connected")
        if len(r.replies) < n:
            if r.error is not None:
                raise r.error
            r.wanted = n
            r.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(r.waiter, self.accept_timeout if text_end else self.timeout)
            except TimeoutError:
                self.close()
                raise SMTPTimeoutError("timed out waiting for the server") from None
            finally:
                r.waiter = None
        return [r.replies.popleft() for _ in range(n)]


def address_ok(address: str) -> bool:
    """Whether an address can go on a command line as it is (ASCII, no controls)."""
    return address.isascii() and not _CONTROL.search(address)


def _stuffed(message: bytes) -> bytes:
    """The message as DATA text: CRLF line ends, leading periods doubled, the end mark."""
    text = _LEADING_PERIOD.sub(b"..", _LINE_ENDINGS.sub(b"\r\n", message))
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    return text + b".\r\n"


def _data_end(reply: Reply) -> BaseException | None:
    return None if reply.code == 250 else SMTPDataError(reply.code, reply.message)
