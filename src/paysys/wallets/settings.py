"""Settings of the wallets service."""

from __future__ import annotations

from functools import cached_property

from pydantic import model_validator

from paysys.kit.money import MoneyError
from paysys.kit.settings import KitSettings
from paysys.wallets.limits import DEFAULT_MAXIMUMS, Maximum, Triple, minor_maximums


class WalletsSettings(KitSettings):
    # The most an owner's spending limits may be, per account type and currency (JSON
    # in PAYSYS_LIMIT_MAXIMUMS, e.g. {"personal": {"USD": {"per_transaction":
    # "10000.00", "daily": "20000.00", "monthly": "50000.00"}}}). A currency not listed
    # for an account type has no maximum. Defaults: limits.DEFAULT_MAXIMUMS.
    limit_maximums: dict[str, dict[str, Maximum]] = DEFAULT_MAXIMUMS

    @cached_property
    def maximums_minor(self) -> dict[str, dict[str, Triple]]:
        return minor_maximums(self.limit_maximums)

    @model_validator(mode="after")
    def _maximums_parse(self) -> WalletsSettings:
        try:
            minor_maximums(self.limit_maximums)
        except MoneyError as exc:
            raise ValueError(f"PAYSYS_LIMIT_MAXIMUMS: {exc}") from None
        return self
