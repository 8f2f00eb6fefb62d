"""Kafka entrypoint of the notifications service."""

from __future__ import annotations

from paysys.kit.consumer import EventConsumer
from paysys.kit.db import Database
from paysys.notifications.models import inbox
from paysys.notifications.service import handle_event
from paysys.notifications.settings import NotificationsSettings

TOPICS = ("user.registered", "transaction.completed", "transaction.failed")


def make_consumer(db: Database, settings: NotificationsSettings) -> EventConsumer:
    return EventConsumer(
        db, inbox, settings.consumer_group, TOPICS, handle_event, settings.kafka_bootstrap_servers
    )
