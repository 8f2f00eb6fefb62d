"""Domain errors of the transactions service."""

from __future__ import annotations

import json
import uuid
from typing import Any

from paysys.kit.errors import AppError


class Replay(Exception):
    """The answer a request's Idempotency-Key keeps, given as it was stored: to a
    replay (`replayed`), or to the request itself when another runner ended what it
    started (its answer is the key's, as every replay's will be)."""

    def __init__(self, status: int, body: dict[str, Any], replayed: bool = True) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.replayed = replayed

    @classmethod
    def of(cls, row: Any, replayed: bool = True) -> Replay | None:
        """The answer a key's row (response_status, response_body as text) keeps, if
        it has one."""
        if row is None or row["response_status"] is None:
            return None
        return cls(row["response_status"], json.loads(row["response_body"]), replayed)


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
