"""Request and response models of the payment-gateway service."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from paysys.kit.money import AmountStr, CurrencyCode
from paysys.kit.text import Input
from paysys.payment_gateway.cards import luhn_ok


class CardIn(Input):
    number: Annotated[str, Field(min_length=12, max_length=19, pattern=r"^[0-9]+$")]
    exp_month: Annotated[int, Field(ge=1, le=12, strict=True)]
    exp_year: Annotated[int, Field(ge=2000, le=2100, strict=True)]
    cvc: Annotated[str, Field(pattern=r"^[0-9]{3,4}$")]

    @field_validator("number")
    @classmethod
    def _luhn(cls, value: str) -> str:
        if not luhn_ok(value):
            raise ValueError("card number fails the Luhn check")
        return value

    def __repr__(self) -> str:  # never let a card number reach a log line
        return f"CardIn(last4={self.number[-4:]})"

    __str__ = __repr__


class ChargeIn(Input):
    transaction_id: uuid.UUID
    amount: AmountStr
    currency: CurrencyCode
    card: CardIn


class PaymentOut(BaseModel):
    payment_id: uuid.UUID
    transaction_id: uuid.UUID
    amount: str
    currency: str
    card_brand: str | None
    card_last4: str | None
    status: str
    failure_code: str | None
