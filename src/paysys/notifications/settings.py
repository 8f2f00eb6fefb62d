"""Settings of the notifications service."""

from __future__ import annotations

import ssl
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator

from paysys.kit.settings import DataKeySettings


class NotificationsSettings(DataKeySettings):
    # The SMTP server's security (its address is SMTP_HOST, SMTP_PORT). STARTTLS, when
    # on, is required: a server that does not offer it gets no mail and no password.
    # Credentials need it outside local and test runs. SMTP_CA_FILE: a private CA.
    smtp_starttls: bool = Field(
        False, validation_alias=AliasChoices("SMTP_STARTTLS", "PAYSYS_SMTP_STARTTLS")
    )
    smtp_username: str = Field(
        "", validation_alias=AliasChoices("SMTP_USERNAME", "PAYSYS_SMTP_USERNAME")
    )
    smtp_password: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("SMTP_PASSWORD", "PAYSYS_SMTP_PASSWORD")
    )
    smtp_ca_file: str | None = Field(
        None, validation_alias=AliasChoices("SMTP_CA_FILE", "PAYSYS_SMTP_CA_FILE")
    )
    # How long the SMTP server may take: to connect, to answer a command; and to answer
    # an email's text. By then the server may well have taken the email (RFC 5321 gives
    # it ten minutes, as it may be scanning it): giving up sooner means sending it again,
    # as happened at 10 s with a server slow after a cold start. The accept timeout
    # bounds every answer of a sending, so that an email's worst case is known.
    smtp_timeout_seconds: float = Field(10.0, gt=0)
    smtp_accept_timeout_seconds: float = Field(60.0, gt=0)
    mail_from: str = "paysys <no-reply@paysys.local>"
    mail_max_attempts: int = 5
    mail_backoff_base_seconds: float = 2.0
    mail_poll_seconds: float = 0.5
    mail_batch_size: int = 50
    # Senders side by side, each with its own SMTP connection and its own claimed
    # batches: one sends an email at a time (a server without PIPELINING, as Mailpit,
    # takes four round trips each), so one sender alone left the machine idle while a
    # backlog drained.
    mail_senders: int = Field(4, ge=1, le=32)
    # How long a claimed job is its sender's; a sender that died mid-send hands it on
    # after this. No email of a batch is begun once the claim could run out before it is
    # through (`email_worst_seconds`), and a batch stops at its first timeout.
    mail_claim_seconds: float = 600.0
    webhook_poll_seconds: float = 0.5
    # The first retry of a failed delivery after this, then doubling (at most 6 h).
    webhook_retry_base_seconds: float = 15.0
    webhook_batch_size: int = 50  # deliveries in flight per sender, one per endpoint
    # How long a claimed delivery is its sender's (more than the 10 s timeout).
    webhook_claim_seconds: float = 60.0
    # How long a deposit's owner (and a processor event waiting for it) is kept for
    # routing the other event of that deposit: longer than Kafka keeps events.
    webhook_route_keep_hours: float = 8 * 24.0
    consumer_group: str = "paysys-notifications"
    # Where a new consumer group starts (see kit.consumer): tests and the bench, which
    # share a broker with earlier runs, start from "latest".
    consumer_start: Literal["earliest", "latest"] = "earliest"

    @property
    def email_worst_seconds(self) -> float:
        """How long one email may take: a connection, then four answers (to MAIL, RCPT,
        DATA and the text), each within the accept timeout."""
        return self.smtp_timeout_seconds + 4 * self.smtp_accept_timeout_seconds

    @model_validator(mode="after")
    def _claim_outlasts_an_email(self) -> NotificationsSettings:
        if self.mail_claim_seconds <= self.email_worst_seconds:
            raise ValueError(
                "PAYSYS_MAIL_CLAIM_SECONDS must exceed PAYSYS_SMTP_TIMEOUT_SECONDS + 4 x "
                "PAYSYS_SMTP_ACCEPT_TIMEOUT_SECONDS: a claim that runs out while an email "
                "is still being sent hands it to another sender, and it goes twice"
            )
        return self

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> NotificationsSettings:
        if self.smtp_username and not self.smtp_starttls and self.env not in ("local", "test"):
            raise ValueError(
                "SMTP_USERNAME needs SMTP_STARTTLS=true outside local mode: the password "
                f"would cross the network in clear (PAYSYS_ENV={self.env})"
            )
        return self

    def smtp_tls(self) -> ssl.SSLContext | None:
        """The context STARTTLS verifies the server with (None: STARTTLS off)."""
        return ssl.create_default_context(cafile=self.smtp_ca_file) if self.smtp_starttls else None

    def smtp_login(self) -> tuple[str, str] | None:
        if not self.smtp_username:
            return None
        return self.smtp_username, self.smtp_password.get_secret_value()
