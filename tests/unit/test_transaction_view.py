"""A transaction as the API shows it: `router.view` builds the JSON document by hand,
for speed (a bulk answer renders up to a thousand). It must be the document pydantic
makes from `TransactionOut`, field for field and character for character."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from paysys.kit.money import CURRENCY_EXPONENTS
from paysys.transactions.models import Status, Transaction
from paysys.transactions.router import to_out, view
from paysys.transactions.schemas import dump

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
    expected = dump(to_out(tx))
    assert view(tx) == expected
    assert json.dumps(view(tx)) == json.dumps(expected)


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
    assert view(tx)["created_at"] == "2026-12-02T07:00:00Z" == dump(to_out(tx))["created_at"]
