"""Settings of the notifications service."""

from __future__ import annotations

from typing import Literal

from paysys.kit.settings import DataKeySettings


class NotificationsSettings(DataKeySettings):
    mail_from: str = "paysys <no-reply@paysys.local>"
    mail_max_attempts: int = 5
    mail_backoff_base_seconds: float = 2.0
    mail_poll_seconds: float = 0.5
    mail_batch_size: int = 50
    # How long a claimed job is its sender's; a sender that died mid-send hands it on
    # after this. Longer than one batch can take (50 sends at the SMTP timeout).
    mail_claim_seconds: float = 600.0
    webhook_poll_seconds: float = 0.5
    # The first retry of a failed delivery after this, then doubling (at most 6 h).
    webhook_retry_base_seconds: float = 15.0
    webhook_batch_size: int = 50  # deliveries in flight per sender, one per endpoint
    # How long a claimed delivery is its sender's (more than the 10 s timeout).
    webhook_claim_seconds: float = 60.0
    consumer_group: str = "paysys-notifications"
    # Where a new consumer group starts (see kit.consumer): tests and the bench, which
    # share a broker with earlier runs, start from "latest".
    consumer_start: Literal["earliest", "latest"] = "earliest"
