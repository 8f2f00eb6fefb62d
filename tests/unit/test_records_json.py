"""A record's JSON (orjson) is the text the standard library wrote with isoformat()
for datetimes and str() for UUIDs: records relayed to MongoDB read the same."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import MetaData

from paysys.kit.records import Records, records_table

RECORDS = Records(records_table(MetaData()))


def _reference(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(type(value).__name__)


@given(
    at=st.datetimes(timezones=st.just(UTC)) | st.datetimes(),
    tx=st.uuids(),
    text=st.text(),
    amount=st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    steps=st.lists(st.dictionaries(st.text(), st.text() | st.none()), max_size=3),
)
def test_a_record_reads_as_the_standard_library_wrote_it(
    at: datetime, tx: uuid.UUID, text: str, amount: Any, steps: list[dict[str, Any]]
) -> None:
    doc = {"transaction_id": tx, "created_at": at, "note": text, "amount": amount, "steps": steps}
    *_, payload = RECORDS.row("transaction_logs", doc)
    assert json.loads(payload) == json.loads(json.dumps(doc, default=_reference))
