"""What a consumer makes of a Kafka record: an envelope with its raw text, or None (logged
and skipped) for anything that is not one, never an exception that stalls a partition."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from paysys.kit.consumer import EventConsumer
from paysys.kit.events import EventEnvelope


def record(value: bytes) -> Any:
    return SimpleNamespace(value=value, topic="transaction.completed", offset=7)


def test_an_event_decodes_with_its_raw_text() -> None:
    sent = EventEnvelope(event_type="transaction.completed", producer="t", data={"a": [1, None]})
    raw = sent.model_dump_json().encode()
    got = EventConsumer.decode(record(raw))
    assert got is not None and got.model_dump() == sent.model_dump()
    assert got.raw == raw.decode()
    assert isinstance(got.event_id, uuid.UUID)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",  # not UTF-8
        b"[]",
        b'{"event_type": "x", "producer": "p"}',  # no data
        b'{"event_id": "nope", "event_type": "x", "producer": "p", "data": {}}',
        b'{"event_type": "x", "producer": "p", "data": {}} trailing',
    ],
)
def test_what_is_not_an_event_is_skipped(value: bytes) -> None:
    assert EventConsumer.decode(record(value)) is None
