"""Test-only fault injection (PAYSYS_ENABLE_FAULT_HOOKS, refused outside local/test):
lets a test force the compensation path or a crash window in a real running saga."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    seconds: float = 0.0


FAULT_NAMES = ("deactivate_destination_after_debit", "pause_after_debit")


class Faults:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._by_destination: dict[uuid.UUID, Fault] = {}

    def arm(self, destination_wallet_id: uuid.UUID, fault: Fault) -> None:
        if self.enabled:
            self._by_destination[destination_wallet_id] = fault

    def take(self, destination_wallet_id: uuid.UUID) -> Fault | None:
        if not self.enabled:
            return None
        return self._by_destination.pop(destination_wallet_id, None)
