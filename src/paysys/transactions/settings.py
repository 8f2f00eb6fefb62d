"""Settings of the transactions service."""

from __future__ import annotations

from paysys.kit.money import DEFAULT_MAX_AMOUNT
from paysys.kit.settings import KitSettings


class TransactionsSettings(KitSettings):
    max_amount: str = DEFAULT_MAX_AMOUNT  # per transaction, in major units
    call_timeout_seconds: float = 10.0
    step_attempts: int = 3
    lease_seconds: float = 15.0
    recovery_interval_seconds: float = 2.0
    recovery_window_seconds: float = 60.0  # the contract's bound on in-flight time
    idempotency_ttl_hours: int = 48
