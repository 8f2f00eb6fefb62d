"""Domain errors of the transactions service."""

from __future__ import annotations

import uuid

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

    @classmethod
    def of_transaction(cls, tx_id: uuid.UUID) -> OutcomePending:
        return cls(
            "A service did not answer; this transaction will be completed or given back "
            "automatically within a minute.",
            transaction_id=str(tx_id),
        )

    @classmethod
    def of_batch(cls, batch_id: uuid.UUID) -> OutcomePending:
        return cls(
            "A service did not answer; these transactions will be completed or failed "
            "automatically within a minute: replay the request with its Idempotency-Key "
            "to read their outcome.",
            batch_id=str(batch_id),
        )


class InvalidTransactionState(AppError):
    status = 409
    code = "INVALID_TRANSACTION_STATE"


class Forbidden(AppError):
    status = 403
    code = "FORBIDDEN"


class RefundExceedsAmount(AppError):
    status = 400
    code = "REFUND_EXCEEDS_AMOUNT"


class AmountExceedsAuthorized(AppError):
    status = 400
    code = "AMOUNT_EXCEEDS_AUTHORIZED"


class CaptureRefusedError(AppError):
    """A capture wallets refused (its code: WALLET_INACTIVE); nothing changed."""

    status = 400
    code = "WALLET_INACTIVE"
