"""The mail sender: sends due email jobs over SMTP, retries with backoff, records the
outcome in MongoDB `notifications`. Jobs are claimed with SKIP LOCKED, so a failing
message never holds up the others and several instances can share the work."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import structlog
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import select

from paysys.kit.context import bind_request
from paysys.kit.db import Database
from paysys.kit.events import utcnow
from paysys.kit.metrics import NOTIFICATIONS_SENT
from paysys.notifications.models import EmailJob
from paysys.notifications.service import recipient
from paysys.notifications.settings import NotificationsSettings

log = structlog.get_logger()


class MailSender:
    def __init__(self, db: Database, mongo: AsyncDatabase[Any], settings: NotificationsSettings):
        self.db = db
        self.mongo = mongo
        self.settings = settings

    async def send(self, to: str, subject: str, body: str, correlation_id: str | None) -> None:
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = to
        msg["Subject"] = subject
        if correlation_id:
            msg["X-Request-ID"] = correlation_id
        msg.set_content(body)
        await aiosmtplib.send(
            msg, hostname=self.settings.smtp_host, port=self.settings.smtp_port, timeout=10
        )

    async def run_once(self) -> int:
        s = self.settings
        async with self.db.uow() as session:
            jobs = (
                (
                    await session.execute(
                        select(EmailJob)
                        .where(EmailJob.status == "pending", EmailJob.next_attempt_at <= utcnow())
                        .order_by(EmailJob.next_attempt_at)
                        .limit(20)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            for job in jobs:
                bind_request(job.correlation_id)
                who = await recipient(session, job.user_id)
                job.attempts += 1
                try:
                    if who is None:
                        raise LookupError("recipient not known yet (user.registered not seen)")
                    await self.send(who.email, job.subject, job.body, job.correlation_id)
                except (aiosmtplib.SMTPException, OSError, LookupError) as exc:
                    job.last_error = str(exc)[:500]
                    if job.attempts >= s.mail_max_attempts:
                        job.status = "failed"
                        await self._record(job, who.email if who else None, "failed")
                        log.error("email_failed", kind=job.kind, error=job.last_error)
                    else:
                        delay = s.mail_backoff_base_seconds * 2 ** (job.attempts - 1)
                        job.next_attempt_at = utcnow() + timedelta(seconds=delay)
                    continue
                job.status = "sent"
                job.sent_at = utcnow()
                await self._record(job, who.email, "sent")
        return len(jobs)

    async def _record(self, job: EmailJob, email: str | None, status: str) -> None:
        # Upsert on the collection's unique key: a retry after a crash writes no twin.
        await self.mongo.notifications.update_one(
            {"event_id": str(job.event_id), "user_id": str(job.user_id), "kind": job.kind},
            {
                "$set": {
                    "email": email,
                    "status": status,
                    "sent_at": utcnow() if status == "sent" else None,
                    "attempts": job.attempts,
                    "error": job.last_error if status == "failed" else None,
                    "correlation_id": job.correlation_id,
                }
            },
            upsert=True,
        )
        NOTIFICATIONS_SENT.labels(job.kind, status).inc()

    async def run(self) -> None:
        while True:
            try:
                handled = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("mail_sender_error", error=str(exc)[:300])
                handled = 0
            if handled == 0:
                await asyncio.sleep(self.settings.mail_poll_seconds)
