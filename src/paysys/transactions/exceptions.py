"""Domain errors of the transactions service."""

from __future__ import annotations

from paysys.kit.errors import AppError


class TransactionNotFound(AppError):
    status = 404
    code = "TRANSACTION_NOT_FOUND"


class WalletNotFound(AppError):
    status = 404
    code = "WALLET_NOT_FOUND"


class TransactionFailed(AppError):
    """The money could not move: 400 with the failure code and the transaction id."""

    status = 400


class IdempotencyKeyReused(AppError):
    status = 422
    code = "IDEMPOTENCY_KEY_REUSED"


class RequestInProgress(AppError):
    status = 409
    code = "REQUEST_IN_PROGRESS"


class OutcomePending(AppError):
    """A dependency did not answer; the recovery worker will finish the transaction."""

    status = 503
    code = "SERVICE_UNAVAILABLE"


# Failure codes that end a transaction as FAILED (contract, "400 when the money could
# not move").
BUSINESS_CODES = frozenset(
    {
        "INSUFFICIENT_FUNDS",
        "WALLET_INACTIVE",
        "CURRENCY_MISMATCH",
        "SAME_WALLET",
        "NOT_A_MERCHANT",
        "CARD_DECLINED",
        "CARD_EXPIRED",
        "PAYMENT_GATEWAY_ERROR",
        "LIMIT_EXCEEDED",
    }
)
