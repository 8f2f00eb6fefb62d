"""Settings of the transactions service."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from paysys.kit.money import DEFAULT_MAX_AMOUNT
from paysys.kit.settings import KitSettings

# Local development default of the idempotency hash key: public, refused outside local.
DEV_IDEMPOTENCY_HASH_KEY = "local-dev-only-idempotency-hash-key"


class TransactionsSettings(KitSettings):
    DEV_SECRETS: ClassVar[dict[str, str]] = {
        **KitSettings.DEV_SECRETS,
        "idempotency_hash_key": DEV_IDEMPOTENCY_HASH_KEY,
    }

    max_amount: str = DEFAULT_MAX_AMOUNT  # per transaction, in major units
    call_timeout_seconds: float = 5.0
    step_attempts: int = 3
    lease_seconds: float = 20.0
    recovery_interval_seconds: float = 2.0
    recovery_window_seconds: float = 60.0  # the contract's bound on in-flight time
    idempotency_ttl_hours: int = 48
    # The longest (and default) life of an authorization before it is voided.
    authorization_ttl_seconds: int = Field(default=604_800, ge=1)
    # Group commit: at most this many transactions per group (one wallets call); a
    # bulk request larger than it still goes whole, alone.
    group_commit_max_items: int = Field(default=1000, ge=1, le=10_000)
    # Key of the HMAC that fingerprints a request body for Idempotency-Key reuse checks.
    idempotency_hash_key: str = DEV_IDEMPOTENCY_HASH_KEY

    @property
    def longest_step_seconds(self) -> float:
        """One saga step at worst: every attempt times out, with the backoff between."""
        backoff = sum(0.2 * 3**i for i in range(self.step_attempts - 1))
        return self.step_attempts * self.call_timeout_seconds + backoff

    @model_validator(mode="after")
    def _lease_outlasts_a_step(self) -> TransactionsSettings:
        # A lease that can run out inside one step hands the saga to a second runner
        # while the first is still waiting on an answer.
        if self.lease_seconds <= self.longest_step_seconds:
            raise ValueError(
                f"PAYSYS_LEASE_SECONDS ({self.lease_seconds}) must exceed the longest saga "
                f"step ({self.longest_step_seconds:.1f} s: PAYSYS_STEP_ATTEMPTS x "
                "PAYSYS_CALL_TIMEOUT_SECONDS plus backoff)"
            )
        return self
