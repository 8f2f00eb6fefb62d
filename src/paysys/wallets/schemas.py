"""Request and response models of the wallets service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Generic, Literal, Self, TypeVar

from pydantic import BaseModel, Field, model_validator

from paysys.kit.money import AmountStr, CurrencyCode
from paysys.kit.text import Input


class CreateWalletIn(Input):
    currency: CurrencyCode = "USD"


class WalletOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    currency: str
    balance: str
    held_balance: str
    available_balance: str
    status: Literal["ACTIVE", "INACTIVE"]
    created_at: datetime
    updated_at: datetime


class PayeeOut(BaseModel):
    wallet_id: uuid.UUID
    currency: str
    name: str
    account_type: str


class WalletList(BaseModel):
    items: list[WalletOut]
    next_cursor: str | None = None


class FundsIn(Input):
    amount: AmountStr
    transaction_id: uuid.UUID
    # The currency the caller means the amount in. paysys's own calls always send it; a
    # wallet in another currency refuses the change (CURRENCY_MISMATCH) instead of
    # reading the same digits in its own currency.
    currency: CurrencyCode | None = None
    # What the change is for, kept on its ledger entry (statements): the transaction's
    # type and description, and the other wallet of the transaction (none: a card).
    type: str | None = Field(default=None, max_length=20)
    description: str | None = Field(default=None, max_length=500)
    counterparty_wallet_id: uuid.UUID | None = None


class RefundIn(FundsIn):
    # add-funds with operation "refund" is the saga's compensation: allowed even on a
    # wallet deactivated since, so money can always go back where it came from.
    operation: Literal["credit", "refund"] = "credit"


class FundsOut(BaseModel):
    wallet_id: uuid.UUID
    user_id: uuid.UUID
    transaction_id: uuid.UUID
    operation: str
    amount: str
    currency: str
    balance: str


class TransferIn(Input):
    """The atomic move of a transfer or payment (internal: the transactions service)."""

    transaction_id: uuid.UUID
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount_minor: int = Field(gt=0, le=10**15)
    currency: CurrencyCode
    kind: Literal["transfer", "payment", "refund"] = "transfer"
    description: str | None = Field(default=None, max_length=500)
    # The request the move is for (its events carry it), when it is not this call's own.
    correlation_id: str | None = Field(default=None, max_length=200)


class TransferOut(BaseModel):
    transaction_id: uuid.UUID
    status: Literal["moved"] = "moved"


class HoldIn(Input):
    """Reserve money for a manual-capture payment (internal: the transactions service)."""

    transaction_id: uuid.UUID
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount_minor: int = Field(gt=0, le=10**15)
    currency: CurrencyCode
    description: str | None = Field(default=None, max_length=500)
    # The request the hold is for (its event carries it), when it is not this call's own.
    correlation_id: str | None = Field(default=None, max_length=200)


class CaptureHoldIn(Input):
    amount_minor: int = Field(gt=0, le=10**15)


class CaptureItemIn(CaptureHoldIn):
    """One capture of a batch: `amount_minor` of the transaction's hold."""

    transaction_id: uuid.UUID
    # The request the capture is for (its events carry it).
    correlation_id: str | None = Field(default=None, max_length=200)


ItemT = TypeVar("ItemT", TransferIn, HoldIn, CaptureItemIn)


class BatchOf(Input, Generic[ItemT]):
    """Items to apply in one database transaction, in order (internal): each
    transaction once."""

    items: list[ItemT] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _once_each(self) -> Self:
        if len({i.transaction_id for i in self.items}) != len(self.items):
            raise ValueError("a transaction_id appears twice")
        return self


class TransferBatchIn(BatchOf[TransferIn]):
    """Moves to apply in one database transaction, in order (internal)."""

    @model_validator(mode="after")
    def _not_to_itself(self) -> TransferBatchIn:
        if any(i.source_wallet_id == i.destination_wallet_id for i in self.items):
            raise ValueError("a move's source and destination are the same wallet")
        return self


class HoldBatchIn(BatchOf[HoldIn]):
    """Holds to take in one database transaction, in order (internal)."""


class CaptureBatchIn(BatchOf[CaptureItemIn]):
    """Captures to make in one database transaction, in order (internal)."""


class BatchResult(BaseModel):
    """One item's outcome in a batch of moves, holds or captures."""

    transaction_id: uuid.UUID
    # what went through ("moved", "held", "captured"); "refused", with its code; or,
    # for a capture, "ended" (the hold was released: its status is the code)
    status: Literal["moved", "held", "captured", "refused", "ended"]
    # A refusal's code; WALLET_NOT_FOUND when a wallet does not exist (not kept).
    code: str | None = None


class BatchOut(BaseModel):
    items: list[BatchResult]


class HoldOut(BaseModel):
    transaction_id: uuid.UUID
    status: Literal["held", "captured", "released"]
    captured_amount_minor: int | None = None


class BalanceAtOut(BaseModel):
    wallet_id: uuid.UUID
    currency: str
    at: datetime
    balance: str


class StatementEntry(BaseModel):
    at: datetime
    transaction_id: uuid.UUID
    type: str | None
    operation: Literal["credit", "debit"]
    amount: str
    balance_after: str
    description: str | None
    counterparty_wallet_id: uuid.UUID | None


class StatementOut(BaseModel):
    wallet_id: uuid.UUID
    currency: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    opening_balance: str
    closing_balance: str
    total_credits: str
    total_debits: str
    entries: list[StatementEntry]


class LimitValues(BaseModel):
    """Amounts in the wallet's currency; null: no limit."""

    per_transaction: str | None
    daily: str | None
    monthly: str | None


class LimitsOut(LimitValues):
    wallet_id: uuid.UUID
    currency: str
    spent_today: str
    spent_this_month: str
    maximum: LimitValues


class LimitsIn(Input):
    """New limits: a field left out keeps its value, null puts it back to the maximum."""

    per_transaction: AmountStr | None = None
    daily: AmountStr | None = None
    monthly: AmountStr | None = None
