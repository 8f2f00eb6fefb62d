"""What to tell whom for each event; writes email jobs, never sends inside a handler."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.context import safe_request_id
from paysys.kit.crypto import FieldCipher
from paysys.kit.events import EventEnvelope
from paysys.notifications.models import Recipient

TRANSACTION_KINDS = {
    ("transaction.completed", "deposit"): [("destination", "deposit_confirmation")],
    ("transaction.completed", "transfer"): [
        ("source", "transfer_sent"),
        ("destination", "transfer_received"),
    ],
    ("transaction.completed", "payment"): [
        ("source", "payment_sent"),
        ("destination", "payment_received"),
    ],
    ("transaction.completed", "refund"): [
        ("source", "refund_sent"),
        ("destination", "refund_received"),
    ],
    # an authorization voided or expired: its money is free again
    ("transaction.voided", "payment"): [("source", "authorization_voided")],
}

# A batch's jobs in one statement, the same text whatever its size (one row per
# execution, or a VALUES list per batch length, costs the database far more).
_ADD_JOBS = text(
    "INSERT INTO email_jobs "
    "(event_id, user_id, kind, subject, body, correlation_id, status, attempts) "
    "SELECT j.*, 'pending', 0 FROM unnest(CAST(:event_id AS uuid[]), "
    "CAST(:user_id AS uuid[]), CAST(:kind AS text[]), CAST(:subject AS text[]), "
    "CAST(:body AS text[]), CAST(:correlation_id AS text[])) AS j "
    "ON CONFLICT DO NOTHING"
)
_JOB_COLUMNS = ("event_id", "user_id", "kind", "subject", "body", "correlation_id")
_ADD_RECIPIENT = pg_insert(Recipient).on_conflict_do_nothing()  # rare: user.registered

SUBJECTS = {
    "welcome": "Welcome to paysys",
    "deposit_confirmation": "Your deposit of {amount} {currency} is in your wallet",
    "transfer_sent": "You sent {amount} {currency}",
    "transfer_received": "You received {amount} {currency}",
    "payment_sent": "You paid {amount} {currency}",
    "payment_received": "You were paid {amount} {currency}",
    "refund_sent": "You refunded {amount} {currency}",
    "refund_received": "You were refunded {amount} {currency}",
    "transaction_failed": "Your {type} of {amount} {currency} did not go through",
    "authorization_voided": "Your authorization of {amount} {currency} was released",
}


def job(envelope: EventEnvelope, user_id: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """One email to send, as the values of an `email_jobs` row."""
    if data.get("captured_amount") and kind != "authorization_voided":
        data = {**data, "amount": data["captured_amount"]}  # what a capture took
    subject = SUBJECTS[kind].format(**data)
    lines = [subject + ".", ""]
    if "transaction_id" in data:
        lines.append(f"Transaction: {data['transaction_id']}")
    if data.get("failure_code"):
        lines.append(f"Reason: {data['failure_code']}")
    lines += ["", "-- paysys"]
    return {
        "event_id": envelope.event_id,
        "user_id": uuid.UUID(user_id),
        "kind": kind,
        "subject": subject,
        "body": "\n".join(lines),
        "correlation_id": safe_request_id(envelope.correlation_id),
    }


def email_of(row: Any, cipher: FieldCipher) -> str:
    return cipher.open(row.email_sealed, row.key_id, f"recipients.email:{row.user_id}")


def jobs_of(
    envelope: EventEnvelope, cipher: FieldCipher, recipients: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The emails one event asks for (and, for a new user, their recipient row)."""
    data = envelope.data
    if envelope.event_type == "user.registered":
        user_id = data["user_id"]
        recipients.append(
            {
                "user_id": uuid.UUID(user_id),
                "email_sealed": cipher.seal(data["email"], f"recipients.email:{user_id}"),
                "full_name_sealed": cipher.seal(
                    data["full_name"], f"recipients.full_name:{user_id}"
                ),
                "key_id": cipher.current,
            }
        )
        return [job(envelope, user_id, "welcome", data)]
    if envelope.event_type == "transaction.failed":
        initiator = data.get("source_user_id") or data.get("destination_user_id")
        return [job(envelope, initiator, "transaction_failed", data)] if initiator else []
    return [
        job(envelope, data[f"{side}_user_id"], kind, data)
        for side, kind in TRANSACTION_KINDS.get((envelope.event_type, data.get("type", "")), [])
        # a refund back to a card: no wallet receives it, no "received" email
        if side == "source" or data.get("destination_wallet_id") is not None
        if data.get(f"{side}_user_id")
    ]


async def handle_events(
    session: AsyncSession, envelopes: list[EventEnvelope], cipher: FieldCipher
) -> None:
    """Email jobs for a batch of events: one insert for all their jobs (and one for the
    recipients they introduce), in the consumer's transaction."""
    recipients: list[dict[str, Any]] = []
    jobs = [j for envelope in envelopes for j in jobs_of(envelope, cipher, recipients)]
    if recipients:
        await session.execute(_ADD_RECIPIENT, recipients)
    if jobs:
        await session.execute(_ADD_JOBS, {name: [j[name] for j in jobs] for name in _JOB_COLUMNS})
