"""Request and response models of the transactions service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from paysys.kit.money import AmountStr, CurrencyCode
from paysys.kit.text import Input, SafeText

Description = Annotated[SafeText, StringConstraints(max_length=500)]


class CardIn(Input):
    number: Annotated[
        str,
        Field(
            min_length=1,
            max_length=30,
            description="A test card: 4242424242424242 succeeds; see docs/api.md for the others.",
            examples=["4242424242424242", "4000000000000002", "4000000000000069"],
        ),
    ]
    exp_month: Annotated[int, Field(strict=True)]
    exp_year: Annotated[int, Field(strict=True)]
    cvc: Annotated[str, Field(min_length=1, max_length=10)]

    def __repr__(self) -> str:  # never let a card number reach a log line
        return "CardIn(***)"

    __str__ = __repr__


class DepositIn(Input):
    type: Literal["deposit"]
    destination_wallet_id: uuid.UUID
    amount: AmountStr
    currency: CurrencyCode | None = None
    card: CardIn
    description: Description | None = None


class TransferIn(Input):
    type: Literal["transfer"]
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount: AmountStr
    currency: CurrencyCode | None = None
    description: Description | None = None


class PaymentIn(Input):
    type: Literal["payment"]
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount: AmountStr
    currency: CurrencyCode | None = None
    description: Description | None = None
    # "manual": authorize now (the money held), capture later (or void); it expires
    # after authorization_ttl_seconds (by default, and at most, the configured maximum).
    capture: Literal["automatic", "manual"] = "automatic"
    authorization_ttl_seconds: Annotated[int, Field(strict=True, ge=1)] | None = None


CreateIn = Annotated[DepositIn | TransferIn | PaymentIn, Field(discriminator="type")]


BatchItemIn = Annotated[TransferIn | PaymentIn, Field(discriminator="type")]


class BatchIn(Input):
    """POST /transactions/batch: up to 1,000 transfers or payments, applied in order."""

    items: list[BatchItemIn] = Field(min_length=1, max_length=1000)


class RefundIn(Input):
    """POST /transactions/{id}/refund: all that is still refundable by default."""

    amount: AmountStr | None = None
    reason: Description | None = None


class CaptureIn(Input):
    """POST /transactions/{id}/capture: all that was authorized by default."""

    amount: AmountStr | None = None


class VoidIn(Input):
    """POST /transactions/{id}/void: no fields."""


class TransactionOut(BaseModel):
    id: uuid.UUID
    type: str
    status: str
    amount: str
    currency: str
    source_wallet_id: uuid.UUID | None
    destination_wallet_id: uuid.UUID | None
    description: str | None
    failure_code: str | None
    captured_amount: str | None = None
    refunded_amount: str
    refunded_transaction_id: uuid.UUID | None = None
    authorization_expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class BatchOut(BaseModel):
    items: list[TransactionOut]


class TransactionList(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
