"""The mail sender: claims due email jobs, sends them over one kept-open SMTP
connection (pipelined, one round trip per email, where the server allows: see
notifications.smtp), and records each outcome (with its MongoDB `notifications` record, through
the records outbox) in PostgreSQL the moment it is known.

- No database lock is held while SMTP talks: jobs are claimed first (status `sending`
  with a claim that runs out), so several instances share the work and a sender that
  dies mid-send hands its jobs on.
- A failure that retrying cannot fix (a 5xx from the server, a message that cannot be
  built) parks the job as failed with its reason at once; it never blocks the others.
- The outcomes of a claimed batch are recorded in PostgreSQL together, in one
  statement, as soon as the batch is through (whatever happens to MongoDB afterwards),
  so a sent email is not sent again. A sender that dies between the server's
  acceptance and that record resends those of its batch (at most `mail_batch_size`),
  with the same Message-ID: at-least-once, recognisably the same message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage, Message
from email.mime.text import MIMEText
from email.utils import parseaddr
from typing import Any

import aiohttp
import aiosmtplib
import structlog
from sqlalchemy import select, text

from paysys.kit.context import bind_request, safe_request_id
from paysys.kit.db import Database
from paysys.kit.events import utcnow
from paysys.kit.metrics import NOTIFICATIONS_SENT, WEBHOOK_DELIVERIES
from paysys.kit.outbox import columns
from paysys.kit.records import Records
from paysys.notifications import service, webhooks
from paysys.notifications.models import Recipient, WebhookEndpoint
from paysys.notifications.service import email_of
from paysys.notifications.settings import NotificationsSettings
from paysys.notifications.smtp import NotTried, PipelinedSMTP, address_ok

log = structlog.get_logger()

# One statement claims a batch: due jobs (pending, or sending whose claim ran out) become
# `sending` until the claim expires.
_CLAIM = text(
    """
    UPDATE email_jobs SET status = 'sending', attempts = attempts + 1,
           next_attempt_at = now() + make_interval(secs => :claim_seconds)
    WHERE id IN (
        SELECT id FROM email_jobs
        WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
        ORDER BY next_attempt_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING id, event_id, user_id, kind, subject, body, attempts, correlation_id
    """
)


# A batch's outcomes and their MongoDB records (none for a job to retry), in one
# statement: one commit per batch, not one per email.
_RECORD = """
WITH o AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[],
                       $5::timestamptz[], $6::int[])
    AS o(id, status, last_error, next_attempt_at, sent_at, back)
), j AS (
  -- back = 1: a job left untried (NotTried) gets back the attempt its claim counted
  UPDATE email_jobs e SET status = o.status,
         last_error = CASE WHEN o.back > 0 THEN e.last_error ELSE o.last_error END,
         attempts = e.attempts - o.back,
         next_attempt_at = coalesce(o.next_attempt_at, e.next_attempt_at), sent_at = o.sent_at
  FROM o WHERE e.id = o.id RETURNING e.id
)
INSERT INTO records_outbox (event_id, topic, key, payload)
SELECT * FROM unnest($7::uuid[], $8::text[], $9::text[], $10::jsonb[])
WHERE EXISTS (SELECT 1 FROM j)
"""


_ADDRESS = re.compile(r"[^\s<>'\"(),;:\[\]]+@[^\s<>'\"(),;:\[\]]+")


async def poll(
    run_once: Callable[[], Awaitable[int]],
    idle_seconds: float,
    event: str,
    wake: asyncio.Event | None = None,
) -> None:
    """A sender's loop: another round at once while there was work, a pause when there
    was none or it failed (logged; the next round tries again). `wake`, when set, ends
    the pause at once: work became due that the last round could not take."""
    while True:
        try:
            handled = await run_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(event, error=str(exc)[:300])
            handled = 0
        if handled == 0:
            if wake is None:
                await asyncio.sleep(idle_seconds)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), idle_seconds)
        if wake is not None:
            wake.clear()


class UnreadableRecipient(ValueError):
    """A recipient row that cannot be opened: retrying will not open it."""


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | failed | retry | untried (never sent: the attempt is given back)
    error: str | None = None


def classify(exc: BaseException) -> Outcome:
    """Whether a send failure is worth another try."""
    code = None
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        code = max(codes) if codes else None
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
    # Servers quote the recipient in their refusals ("<bob@example.com>: no such user"),
    # and aiosmtplib names it too: the reason goes to logs and email_jobs.last_error,
    # where no address may (docs/security.md), so every address in it is masked.
    reason = _ADDRESS.sub("<address>", f"{type(exc).__name__}: {exc}")[:500]
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Our credentials, refused (5xx as well): no email of the queue is at fault, and
        # each would fail alike until the configuration is fixed. Retried, and alerted.
        return Outcome("retry", reason)
    if code is not None and 500 <= code < 600:
        return Outcome("failed", reason)
    if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError | LookupError):
        return Outcome("retry", reason)
    return Outcome("failed", reason)  # anything else would fail the same way next time


class MailSender:
    def __init__(self, db: Database, records: Records, settings: NotificationsSettings):
        self.db = db
        self.records = records
        self.settings = settings
        self._smtp: aiosmtplib.SMTP | None = None  # non-ASCII mail, or no PIPELINING
        self._pipe: PipelinedSMTP | None = None
        self._tls = settings.smtp_tls()  # built once: it reads the CA bundle
        self.sender = parseaddr(settings.mail_from)[1]

    def message(self, job: Any, to: str) -> Message:
        headers = self.headers(job, to)
        if all(v.isascii() for v in headers.values()) and job.body.isascii():
            # The usual case, through the compat32 classes: a fifth of the CPU of
            # EmailMessage, whose header objects are most of a notification's cost.
            plain = MIMEText(job.body, "plain", "us-ascii")
            for name, value in headers.items():
                plain[name] = value
            return plain
        msg = EmailMessage()  # non-ASCII: the modern API encodes it (RFC 2047, SMTPUTF8)
        for name, value in headers.items():
            msg[name] = value
        msg.set_content(job.body)
        return msg

    def headers(self, job: Any, to: str) -> dict[str, str]:
        headers = {"From": self.settings.mail_from, "To": to, "Subject": job.subject}
        # One Message-ID per notification, the same on every attempt: if a sender dies
        # between the server's acceptance and its record, the resend is recognisably the
        # same message (receivers deduplicate by it), not a second one.
        headers["Message-ID"] = f"<{job.event_id}.{job.kind}.{job.user_id}@paysys.local>"
        rid = safe_request_id(job.correlation_id)
        if rid:
            headers["X-Request-ID"] = rid
        return headers

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is None or not self._smtp.is_connected:
            s, login = self.settings, self.settings.smtp_login()
            smtp = aiosmtplib.SMTP(
                hostname=s.smtp_host,
                port=s.smtp_port,
                timeout=s.smtp_timeout_seconds,
                start_tls=s.smtp_starttls,  # required when on; never opportunistic
                tls_context=self._tls,
                username=login[0] if login else None,
                password=login[1] if login else None,
            )
            await smtp.connect()
            self._smtp = smtp
        return self._smtp

    async def _drop_connection(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except Exception:
                log.debug("smtp_close_failed")

    async def send(self, msg: Message, to: str) -> None:
        for attempt in (1, 2):
            smtp = await self._connection()
            try:
                wait = self.settings.smtp_accept_timeout_seconds  # per command
                if isinstance(msg, EmailMessage):
                    await smtp.send_message(msg, timeout=wait)  # it decides on SMTPUTF8
                else:
                    # Envelope known, ASCII: straight to the server, without send_message
                    # copying the message and parsing its addresses back out of it.
                    await smtp.sendmail(self.sender, [to], msg.as_bytes(), timeout=wait)
                return
            except aiosmtplib.SMTPServerDisconnected:
                # The kept-open connection went stale (server idle timeout): once more
                # on a fresh one.
                await self._drop_connection()
                if attempt == 2:
                    raise
            except BaseException:
                # The session may be mid-transaction after a refusal: start clean.
                await self._drop_connection()
                raise

    async def run_once(self) -> int:
        s = self.settings
        async with self.db.uow() as session:
            jobs = (
                await session.execute(
                    _CLAIM,
                    {"claim_seconds": s.mail_claim_seconds, "batch": s.mail_batch_size},
                )
            ).all()
            if not jobs:
                return 0
            found = (
                await session.execute(
                    select(
                        Recipient.user_id,
                        Recipient.email_sealed,
                        Recipient.key_id,
                    ).where(Recipient.user_id.in_({j.user_id for j in jobs}))
                )
            ).all()
        # No email is begun once the claim could run out before it is through: another
        # sender would take the batch over and send that email again.
        deadline = asyncio.get_running_loop().time() + s.mail_claim_seconds - s.email_worst_seconds
        who: dict[Any, str] = {}
        unreadable: dict[Any, BaseException] = {}
        for r in found:
            try:
                who[r.user_id] = email_of(r, s.cipher)
            except Exception as exc:  # a key gone, a row damaged: that job alone fails
                unreadable[r.user_id] = UnreadableRecipient(
                    f"the recipient's address cannot be decrypted ({type(exc).__name__})"
                )
        results: dict[int, BaseException | None] = {}
        batch: list[tuple[Any, str, bytes]] = []  # for the pipelining connection
        pipelines = await self._pipelining()
        stalled: BaseException | None = None  # a send timed out: the rest wait
        for job in jobs:
            bind_request(job.correlation_id)
            email = who.get(job.user_id)
            try:
                if stalled is not None:
                    raise stalled
                if asyncio.get_running_loop().time() > deadline:
                    raise NotTried.late()
                if job.user_id in unreadable:
                    raise unreadable[job.user_id]
                if email is None:
                    raise LookupError("recipient not known yet (user.registered not seen)")
                msg = self.message(job, email)
                if pipelines and not isinstance(msg, EmailMessage) and address_ok(email):
                    batch.append((job, email, msg.as_bytes()))
                    continue
                await self.send(msg, email)  # aiosmtplib: non-ASCII, or no PIPELINING
                results[job.id] = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                results[job.id] = exc
                if isinstance(exc, TimeoutError) and stalled is None:
                    stalled = NotTried(
                        "not tried: the server timed out on an earlier email of the batch"
                    )
        results.update(await self.send_pipelined(batch, deadline))
        outcomes = [(job, who.get(job.user_id), self.outcome(job, results[job.id])) for job in jobs]
        retried = collections.Counter(o.error for _, _, o in outcomes if o.status == "retry")
        if retried:  # once per batch (an outage fails every email of it alike)
            structlog.contextvars.unbind_contextvars("request_id")  # a batch's, not one's
            log.warning(
                "emails_to_retry", count=retried.total(), errors=dict(retried.most_common(3))
            )
        await self.record(outcomes)
        return len(jobs)

    def outcome(self, job: Any, failure: BaseException | None) -> Outcome:
        if failure is None:
            return Outcome("sent")
        if isinstance(failure, NotTried):  # never sent: due again at once, not counted
            return Outcome("untried", str(failure))
        outcome = classify(failure)
        if outcome.status == "retry" and job.attempts >= self.settings.mail_max_attempts:
            outcome = Outcome("failed", outcome.error)
        if outcome.status == "failed":
            bind_request(job.correlation_id)
            log.error("email_failed", kind=job.kind, error=outcome.error)
        return outcome

    async def _pipelining(self) -> bool:
        """Whether the server pipelines (connecting if need be). A server that cannot be
        reached is left to the sends to find out, as before."""
        if self._pipe is not None and self._pipe.is_connected:
            return True
        self._drop_pipe()
        s = self.settings
        pipe = PipelinedSMTP(
            s.smtp_host,
            s.smtp_port,
            timeout=s.smtp_timeout_seconds,
            tls=self._tls,
            login=s.smtp_login(),
            accept_timeout=s.smtp_accept_timeout_seconds,
        )
        try:
            if await pipe.connect():
                self._pipe = pipe
                return True
        except (OSError, TimeoutError, aiosmtplib.SMTPException) as exc:
            log.debug("smtp_pipelining_connect_failed", error=str(exc)[:200])
        pipe.close()
        return False

    async def send_pipelined(
        self, batch: list[tuple[Any, str, bytes]], deadline: float | None = None
    ) -> dict[int, BaseException | None]:
        """Job id -> None (accepted) or why not. A kept-open connection that turns out
        dead before any email's text went out is replaced once."""
        if not batch:
            return {}
        mails = [(email, data) for _, email, data in batch]
        for attempt in (1, 2):
            pipe = self._pipe
            try:
                if pipe is None:
                    raise aiosmtplib.SMTPServerDisconnected("the server stopped pipelining")
                done = await pipe.send_many(self.sender, mails, deadline)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._drop_pipe()
                fresh = pipe is not None and not pipe.done and not pipe.wrote_text
                if attempt == 1 and fresh and await self._pipelining():
                    continue  # nothing was sent on the stale connection
                done = [*(pipe.done if pipe else []), *[exc] * len(mails)][: len(mails)]
            return {job.id: r for (job, _, _), r in zip(batch, done, strict=True)}
        raise AssertionError("unreachable")

    def _drop_pipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close()

    async def record(self, outcomes: list[tuple[Any, str | None, Outcome]]) -> None:
        """The jobs' new states and, once final, their MongoDB records: one statement."""
        now = utcnow()
        states: list[tuple[Any, ...]] = []
        rows: list[tuple[Any, ...]] = []
        final: list[tuple[str, str]] = []
        for job, email, outcome in outcomes:
            next_attempt = None
            if outcome.status == "retry":
                delay = self.settings.mail_backoff_base_seconds * 2 ** (job.attempts - 1)
                next_attempt = now + timedelta(seconds=delay)
            elif outcome.status == "untried":
                next_attempt = now
            again = outcome.status in ("retry", "untried")
            status = "pending" if again else outcome.status
            sent_at = now if outcome.status == "sent" else None
            back = int(outcome.status == "untried")
            states.append((job.id, status, outcome.error, next_attempt, sent_at, back))
            if again:
                continue
            final.append((job.kind, outcome.status))
            rows.append(
                self.records.row(
                    "notifications",
                    {
                        "event_id": str(job.event_id),
                        "user_id": str(job.user_id),
                        "kind": job.kind,
                        "email": email,
                        "status": outcome.status,
                        "sent_at": sent_at,
                        "attempts": job.attempts,
                        "error": outcome.error if outcome.status == "failed" else None,
                        "correlation_id": safe_request_id(job.correlation_id),
                    },
                )
            )
        async with self.db.raw() as conn:
            await conn.execute(_RECORD, *columns(states, 6), *columns(rows))
        if rows:
            self.db.written(self.records.table.name)
        for kind, status in final:
            NOTIFICATIONS_SENT.labels(kind, status).inc()

    async def run(self) -> None:
        try:
            await poll(self.run_once, self.settings.mail_poll_seconds, "mail_sender_error")
        finally:
            self._drop_pipe()
            await self._drop_connection()


# -- webhooks: deliveries claimed (at most one in flight per endpoint, so a slow or dead
# endpoint delays nobody else), POSTed, and their outcome recorded

_CLAIM_DELIVERIES = text(
    """
    UPDATE webhook_deliveries d SET attempts = d.attempts + 1,
           claimed_until = now() + make_interval(secs => :claim_seconds)
    WHERE d.id IN (
        SELECT DISTINCT ON (x.endpoint_id) x.id FROM webhook_deliveries x
        WHERE x.status = 'pending' AND x.next_attempt_at <= now()
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries y
                          WHERE y.endpoint_id = x.endpoint_id AND y.status = 'pending'
                            AND y.claimed_until > now())
        ORDER BY x.endpoint_id, x.next_attempt_at LIMIT :batch)
      -- re-checked on the row as another sender may have just claimed it
      AND (d.claimed_until IS NULL OR d.claimed_until <= now()) AND d.status = 'pending'
    RETURNING d.id, d.endpoint_id, d.event_id, d.body, d.attempts, d.created_at,
              d.claimed_until
    """
)

# Only while the claim is still this sender's: a manual retry meanwhile cleared it
# (service.retry_delivery), and the retried attempt's outcome is the one that counts.
_RECORD_DELIVERY = text(
    "UPDATE webhook_deliveries SET status = :status, last_status_code = :code,"
    " last_error = :error, next_attempt_at = :next_at, claimed_until = NULL"
    " WHERE id = :id AND attempts = :attempts AND claimed_until = :claimed_until"
)


async def prune_routes_hourly(db: Database, settings: NotificationsSettings) -> None:
    """Keeps the deposit-owner routes from growing for ever (service.prune_routes)."""
    keep = timedelta(hours=settings.webhook_route_keep_hours)
    while True:
        try:
            async with db.uow() as session:
                gone = await service.prune_routes(session, keep)
            if gone:
                log.info("webhook_routes_pruned", rows=gone)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("webhook_routes_prune_failed", error=str(exc)[:300])
        await asyncio.sleep(3600)


class WebhookSender:
    """Claims due deliveries and POSTs each, signed, with a 10 s timeout, no redirects
    and nothing of the answer read but its status. A 2xx succeeds; anything else is
    tried again with backoff (webhooks.retry_delay) until three days have passed. A
    sender that dies mid-delivery leaves its claim to run out: the delivery goes again,
    with the same event id (at least once)."""

    def __init__(self, db: Database, settings: NotificationsSettings) -> None:
        self.db = db
        self.settings = settings
        self.public_only = settings.env not in ("local", "test")
        self.http: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        # Set when a delivery ends: its endpoint's next one is due at once, not a poll
        # interval later (one in flight per endpoint made that the endpoint's pace).
        self._ended = asyncio.Event()

    def _session(self) -> aiohttp.ClientSession:
        if self.http is None:
            connector = aiohttp.TCPConnector(
                limit=200,
                limit_per_host=10,
                resolver=webhooks.SafeResolver() if self.public_only else None,
            )
            self.http = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=webhooks.TIMEOUT_SECONDS),
            )
        return self.http

    async def run_once(self) -> int:
        """Claims what is due, up to the room left, and sends each on its own: a round
        never waits for a delivery (one that hangs holds only its endpoint, whose other
        deliveries the claim skips while it is in flight). How many it claimed; with no
        room, it waits for a delivery to end."""
        s = self.settings
        room = s.webhook_batch_size - len(self._inflight)
        if room <= 0:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return 1
        async with self.db.uow() as session:
            claimed = (
                await session.execute(
                    _CLAIM_DELIVERIES, {"claim_seconds": s.webhook_claim_seconds, "batch": room}
                )
            ).all()
            if not claimed:
                return 0
            endpoints = {
                e.id: e
                for e in (
                    await session.execute(
                        select(WebhookEndpoint).where(
                            WebhookEndpoint.id.in_({c.endpoint_id for c in claimed})
                        )
                    )
                ).scalars()
            }
        for c in claimed:
            task = asyncio.create_task(self._send(c, endpoints.get(c.endpoint_id)))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(claimed)

    async def _send(self, c: Any, endpoint: Any) -> None:
        try:
            status, code, error = await self.deliver(c, endpoint)
            now = utcnow()
            next_at = now
            if status == "retry":
                next_at = now + webhooks.retry_delay(
                    c.attempts, self.settings.webhook_retry_base_seconds
                )
                status = "pending" if next_at - c.created_at < webhooks.GIVE_UP_AFTER else "failed"
            async with self.db.uow() as session:
                recorded = await session.execute(
                    _RECORD_DELIVERY,
                    {
                        "id": c.id,
                        "status": status,
                        "code": code,
                        "error": error,
                        "next_at": next_at,
                        "attempts": c.attempts,
                        "claimed_until": c.claimed_until,
                    },
                )
            if recorded.rowcount:  # type: ignore[attr-defined]
                WEBHOOK_DELIVERIES.labels("retried" if status == "pending" else status).inc()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # its claim runs out and it goes again
            log.warning("webhook_delivery_error", error=str(exc)[:300])
        finally:
            self._ended.set()

    async def deliver(self, c: Any, endpoint: Any) -> tuple[str, int | None, str | None]:
        """(succeeded | retry, the answer's status code, what went wrong)."""
        if endpoint is None:
            return "failed", None, "the endpoint was deleted"
        if self.public_only:
            literal = webhooks.host_is_literal(endpoint.url)
            if literal is not None and not webhooks.address_allowed(literal):
                return "retry", None, "the address is not public"
        secret = self.settings.cipher.open(
            endpoint.secret_sealed, endpoint.key_id, f"webhook_endpoints.secret:{endpoint.id}"
        )
        body = c.body.encode()
        headers = {
            "Content-Type": "application/json",
            "Paysys-Event-Id": str(c.event_id),
            "Paysys-Signature": webhooks.signature(secret, body, int(time.time())),
            "User-Agent": "paysys-webhooks/1",
        }
        try:
            async with self._session().post(
                endpoint.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                code = resp.status  # the answer's body is never read: no size to cap
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return "retry", None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= code < 300:
            return "succeeded", code, None
        return "retry", code, f"answered {code}"

    async def run(self) -> None:
        try:
            await poll(
                self.run_once,
                self.settings.webhook_poll_seconds,
                "webhook_sender_error",
                self._ended,
            )
        finally:
            for task in list(self._inflight):  # their claims run out: sent again later
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
            if self.http is not None:
                await self.http.close()
