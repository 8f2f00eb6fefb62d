"""Domain errors of the transactions service."""

from __future__ import annotations

from paysys.kit.errors import AppError


class TransactionNotFound(AppError):
    status = 404
    code = "TRANSACTION_NOT_FOUND"


class WalletNotFound(AppError):
    status = 404
    code = "WALLET_NOT_FOUND"


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


class InvalidTransactionState(AppError):
    status = 409
    code = "INVALID_TRANSACTION_STATE"


class Forbidden(AppError):
    status = 403
    code = "FORBIDDEN"


class RefundExceedsAmount(AppError):
    status = 400
    code = "REFUND_EXCEEDS_AMOUNT"
