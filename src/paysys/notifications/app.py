"""Builds the notifications service: the Kafka consumer, the mail and webhook senders,
and an HTTP app for the webhooks API, health, readiness and metrics."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.metrics import NOTIFICATIONS_SENT, WEBHOOK_DELIVERIES, prime
from paysys.kit.runtime import Runtime
from paysys.notifications import models
from paysys.notifications.consumers import make_consumer
from paysys.notifications.router import router
from paysys.notifications.service import SUBJECTS
from paysys.notifications.settings import NotificationsSettings
from paysys.notifications.tasks import MailSender, WebhookSender, prune_routes_hourly


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    rt = Runtime(
        "notifications",
        settings,
        schema="notifications",
        records=models.records_outbox,
        mongo=True,
        kafka=True,
    )

    async def on_start(app: FastAPI) -> None:
        prime(NOTIFICATIONS_SENT, *[(k, s) for k in SUBJECTS for s in ("sent", "failed")])
        prime(WEBHOOK_DELIVERIES, ("succeeded",), ("retried",), ("failed",))
        consumer = make_consumer(rt.db, settings)
        rt.tasks.start("consumer", consumer.run)

        async def check_consumer() -> None:
            if not consumer.assigned:
                raise RuntimeError("no Kafka partitions assigned yet")

        app.state.checks["kafka_consumer"] = check_consumer
        for n in range(settings.mail_senders):  # each claims its own batches
            rt.tasks.start(f"mail-sender-{n}", MailSender(rt.db, rt.records_or_fail, settings).run)
        rt.tasks.start("webhook-sender", WebhookSender(rt.db, settings).run)
        rt.tasks.start("webhook-routes-pruner", lambda: prune_routes_hourly(rt.db, settings))

    app = build_app("notifications", settings, rt.lifespan(on_start))
    app.include_router(router)
    return app
