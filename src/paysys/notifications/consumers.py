"""Kafka entrypoint of the notifications service."""

from __future__ import annotations

import functools

from paysys.kit.consumer import EventConsumer
from paysys.kit.db import Database
from paysys.kit.events import TOPICS as EVENT_TOPICS
from paysys.notifications.models import inbox
from paysys.notifications.service import handle_events
from paysys.notifications.settings import NotificationsSettings

# Every topic: email for a few (service.NOTIFIED), webhooks for all of them.
# (bench/isolated.py's NOTIFIED_TOPICS is this list.)
TOPICS = EVENT_TOPICS


def make_consumer(db: Database, settings: NotificationsSettings) -> EventConsumer:
    handler = functools.partial(handle_events, cipher=settings.cipher)
    return EventConsumer(
        db,
        inbox,
        settings.consumer_group,
        [settings.kafka_topic_prefix + topic for topic in TOPICS],
        handler,
        settings.kafka_bootstrap_servers,
        start_from=settings.consumer_start,
        options=settings.kafka_options(),
    )
