"""An outbox row's JSON (orjson, no pydantic model per event) is the envelope's own:
what EventEnvelope.model_dump_json writes, byte for byte, so consumers and webhook
receivers read the same text as before."""

from __future__ import annotations

import uuid

import orjson
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import MetaData

from paysys.kit.context import bind_request, current_request_id
from paysys.kit.events import EventEnvelope
from paysys.kit.outbox import Outbox, outbox_table

OUTBOX = Outbox(outbox_table(MetaData()), "transactions")
VALUES = st.none() | st.text() | st.integers(-(2**53), 2**53) | st.booleans()


@given(
    topic=st.sampled_from(["transaction.completed", "wallet.created"]),
    key=st.text(min_size=1),
    data=st.dictionaries(st.text(), VALUES | st.lists(VALUES, max_size=3), max_size=8),
    correlation_id=st.none() | st.text(min_size=1),
)
def test_an_event_row_is_the_envelope_as_pydantic_writes_it(
    topic: str, key: str, data: dict[str, object], correlation_id: str | None
) -> None:
    event_id, row_topic, row_key, payload = OUTBOX.row(topic, key, data, correlation_id)
    assert (row_topic, row_key) == (topic, key)
    envelope = EventEnvelope.model_validate_json(payload)
    assert envelope.model_dump_json() == payload
    assert envelope.event_id == event_id
    assert (envelope.event_type, envelope.producer, envelope.data) == (topic, "transactions", data)
    assert envelope.correlation_id == (correlation_id or current_request_id())
    assert envelope.occurred_at.utcoffset() is not None


def test_an_event_row_takes_the_current_request_id_when_none_is_given() -> None:
    bind_request("req-1")
    *_, payload = OUTBOX.row("wallet.created", "k", {"a": 1})
    assert orjson.loads(payload)["correlation_id"] == "req-1"


def test_an_instant_on_a_whole_second_is_written_as_pydantic_writes_it() -> None:
    envelope = EventEnvelope(
        event_id=uuid.uuid4(),
        event_type="wallet.created",
        producer="wallets",
        data={},
        occurred_at="2026-12-07T21:00:00Z",
    )
    fast = orjson.dumps(envelope.model_dump(), option=orjson.OPT_UTC_Z).decode()
    assert fast == envelope.model_dump_json()
