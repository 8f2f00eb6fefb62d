"""A transaction as the API shows it: `router.view` builds the JSON document by hand,
for speed (a bulk answer renders up to a thousand). It must be the document pydantic
makes from `TransactionOut` given the row's fields (the reference below, which spells
the answer's rules: the captured amount only once COMPLETED, no refund as zero), field
for field and character for character; and `to_out`, made from it, renders it back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from paysys.kit.money import CURRENCY_EXPONENTS, format_amount
from paysys.transactions.models import Status, Transaction
from paysys.transactions.router import to_out, view
from paysys.transactions.schemas import TransactionOut, dump


def reference(tx: Transaction) -> TransactionOut:
    """The model from the row's fields, pydantic converting each."""
    return TransactionOut(
        id=tx.id,
        type=tx.type,
        status=tx.status,
        amount=format_amount(tx.amount, tx.currency),
        currency=tx.currency,
        source_wallet_id=tx.source_wallet_id,
        destination_wallet_id=tx.destination_wallet_id,
        description=tx.description,
        failure_code=tx.failure_code,
        refunded_amount=format_amount(tx.refunded_amount or 0, tx.currency),
        refunded_transaction_id=tx.refunded_transaction_id,
        captured_amount=None
        if tx.captured_amount is None or tx.status != Status.COMPLETED
        else format_amount(tx.captured_amount, tx.currency),
        authorization_expires_at=tx.authorization_expires_at,
        created_at=tx.created_at,
        updated_at=tx.updated_at,
    )


instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
uuids = st.uuids()


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    amount = draw(st.integers(1, 10**15))
    return Transaction(
        id=draw(uuids),
        type=draw(st.sampled_from(["deposit", "transfer", "payment", "refund"])),
        status=draw(st.sampled_from(list(Status))),
        amount=amount,
        currency=draw(st.sampled_from(sorted(CURRENCY_EXPONENTS))),
        source_wallet_id=draw(st.none() | uuids),
        destination_wallet_id=draw(st.none() | uuids),
        description=draw(st.none() | st.text(max_size=40)),
        failure_code=draw(st.none() | st.sampled_from(["INSUFFICIENT_FUNDS", "LIMIT_EXCEEDED"])),
        refunded_amount=draw(st.none() | st.integers(0, amount)),
        refunded_transaction_id=draw(st.none() | uuids),
        captured_amount=draw(st.none() | st.integers(1, amount)),
        authorization_expires_at=draw(st.none() | instants),
        created_at=draw(instants),
        updated_at=draw(instants),
    )


@settings(max_examples=300)
@given(transactions())
def test_the_view_is_the_document_pydantic_makes(tx: Transaction) -> None:
    expected = dump(reference(tx))
    assert view(tx) == expected
    assert json.dumps(view(tx)) == json.dumps(expected)
    assert dump(to_out(tx)) == expected


def test_a_whole_second_and_a_plain_uuid_render_as_pydantic_renders_them() -> None:
    instant = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)  # no fraction of a second
    tx = Transaction(
        id=uuid.uuid4(),
        type="transfer",
        status=Status.COMPLETED,
        amount=100,
        currency="USD",
        source_wallet_id=uuid.uuid4(),
        destination_wallet_id=uuid.uuid4(),
        refunded_amount=0,
        created_at=instant,
        updated_at=instant,
    )
    assert view(tx)["created_at"] == "2026-12-02T07:00:00Z" == dump(reference(tx))["created_at"]
    assert dump(to_out(tx))["created_at"] == "2026-12-02T07:00:00Z"
