"""Domain errors of the wallets service."""

from __future__ import annotations

from paysys.kit.errors import AppError


class WalletNotFound(AppError):
    status = 404
    code = "WALLET_NOT_FOUND"


class HoldNotFound(AppError):
    status = 404
    code = "HOLD_NOT_FOUND"


class HoldEndedError(AppError):
    """A capture of a released hold, or a release of a captured one."""

    status = 409
    code = "HOLD_ENDED"


class WalletExists(AppError):
    status = 409
    code = "WALLET_EXISTS"


class WalletInactive(AppError):
    status = 400
    code = "WALLET_INACTIVE"


class CreditFenced(AppError):
    status = 400
    code = "CREDIT_FENCED"


class InsufficientFunds(AppError):
    status = 400
    code = "INSUFFICIENT_FUNDS"


class CurrencyMismatch(AppError):
    status = 400
    code = "CURRENCY_MISMATCH"


class LimitExceeded(AppError):
    status = 400
    code = "LIMIT_EXCEEDED"


class LimitAboveMaximum(AppError):
    status = 422
    code = "LIMIT_ABOVE_MAXIMUM"


# A refused balance change answers with the same error every time it is asked again.
REFUSALS: dict[str, type[AppError]] = {
    "INSUFFICIENT_FUNDS": InsufficientFunds,
    "WALLET_INACTIVE": WalletInactive,
    "CURRENCY_MISMATCH": CurrencyMismatch,
    "LIMIT_EXCEEDED": LimitExceeded,
}
