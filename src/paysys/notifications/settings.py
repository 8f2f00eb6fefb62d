"""Settings of the notifications service."""

from __future__ import annotations

from paysys.kit.settings import KitSettings


class NotificationsSettings(KitSettings):
    mail_from: str = "paysys <no-reply@paysys.local>"
    mail_max_attempts: int = 5
    mail_backoff_base_seconds: float = 2.0
    mail_poll_seconds: float = 0.5
    consumer_group: str = "paysys-notifications"
