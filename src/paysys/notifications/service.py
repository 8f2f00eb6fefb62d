"""What to tell whom for each event; writes email jobs, never sends inside a handler."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.context import safe_request_id
from paysys.kit.crypto import FieldCipher
from paysys.kit.events import EventEnvelope, utcnow
from paysys.notifications import webhooks
from paysys.notifications.exceptions import DeliveryNotFound, TooManyWebhooks, WebhookNotFound
from paysys.notifications.models import (
    DepositOwner,
    Recipient,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookRoute,
)

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
# The events that send email (the consumer reads every topic, for webhooks).
NOTIFIED = ("user.registered", "transaction.completed", "transaction.failed", "transaction.voided")
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
    if envelope.event_type not in NOTIFIED:
        return []
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
    await add_deliveries(session, envelopes)


# -- webhooks: endpoints per user, and a delivery per (endpoint, event) they subscribe to


async def create_endpoint(
    session: AsyncSession, cipher: FieldCipher, user_id: uuid.UUID, url: str, events: list[str]
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (shown once, then only sealed). At most
    MAX_ENDPOINTS per user, counted under a lock of the user's (two creations racing
    never make an eleventh)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:u, 0))"), {"u": f"webhooks:{user_id}"}
    )
    count = await session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id)
    )
    if (count or 0) >= webhooks.MAX_ENDPOINTS:
        raise TooManyWebhooks(f"At most {webhooks.MAX_ENDPOINTS} endpoints per user.")
    endpoint_id = uuid.uuid4()
    secret = webhooks.new_secret()
    row = WebhookEndpoint(
        id=endpoint_id,
        user_id=user_id,
        url=url,
        events=events,
        secret_sealed=cipher.seal(secret, f"webhook_endpoints.secret:{endpoint_id}"),
        key_id=cipher.current,
        status="enabled",
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row, secret


async def endpoints_of(session: AsyncSession, user_id: uuid.UUID) -> list[WebhookEndpoint]:
    rows = await session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.user_id == user_id)
        .order_by(WebhookEndpoint.created_at)
    )
    return list(rows.scalars())


async def endpoint(
    session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    row = await session.get(WebhookEndpoint, endpoint_id)
    if row is None or row.user_id != user_id:  # another user's: as if none
        raise WebhookNotFound("No such webhook endpoint.")
    return row


async def delete_endpoint(
    session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID
) -> None:
    """Gone with its deliveries: nothing more is sent to it, not even a retry."""
    row = await endpoint(session, user_id, endpoint_id)
    await session.delete(row)
    await session.flush()


async def deliveries_of(
    session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID, limit: int
) -> list[WebhookDelivery]:
    await endpoint(session, user_id, endpoint_id)
    rows = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def retry_delivery(
    session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """Due again now, whatever its status. A delivery in flight is released too: the
    retry goes at once, and the attempt in flight no longer records its outcome."""
    await endpoint(session, user_id, endpoint_id)
    row = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if row is None or row.endpoint_id != endpoint_id:
        raise DeliveryNotFound("No such delivery.")
    row.status, row.next_attempt_at, row.claimed_until = "pending", utcnow(), None
    await session.flush()
    return row


_ADD_DELIVERIES = text(
    "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, body, status,"
    " attempts) SELECT d.*, 'pending', 0 FROM unnest(CAST(:id AS uuid[]),"
    " CAST(:endpoint_id AS uuid[]), CAST(:event_id AS uuid[]), CAST(:event_type AS text[]),"
    " CAST(:body AS text[])) AS d ON CONFLICT DO NOTHING"
)


async def prune_routes(session: AsyncSession, keep: timedelta) -> int:
    """Forgets the deposit owners and waiting processor events older than `keep`: the
    other event of a deposit comes within seconds, or after an outage within Kafka's
    retention, never later. How many rows went."""
    cutoff = utcnow() - keep
    gone = 0
    for model in (DepositOwner, WebhookRoute):
        result = await session.execute(delete(model).where(model.created_at < cutoff))
        gone += result.rowcount  # type: ignore[attr-defined]
    return gone


async def add_deliveries(session: AsyncSession, envelopes: list[EventEnvelope]) -> None:
    """A delivery per event and per endpoint of a user it concerns that subscribes to
    its topic, in the consumer's transaction (one query for the endpoints, one insert).
    A payment.processed event names no user: the deposit's own transaction event does,
    and the two come from different producers, in either order. Whichever comes second
    finds the other (webhook_routes keeps a waiting processor event, deposit_owners a
    deposit's owner)."""
    wanted: list[tuple[str, str, str, str]] = []  # (user, event_id, type, body)
    for e in envelopes:
        body = e.raw or e.model_dump_json()
        if e.event_type == "payment.processed":
            tx = uuid.UUID(str(e.data["transaction_id"]))
            owner = await session.scalar(
                select(DepositOwner.user_id).where(DepositOwner.transaction_id == tx)
            )
            if owner is not None:
                wanted.append((str(owner), str(e.event_id), e.event_type, body))
            else:
                session.add(
                    WebhookRoute(
                        event_id=e.event_id, transaction_id=tx, event_type=e.event_type, body=body
                    )
                )
            continue
        for user in webhooks.concerned(e):
            wanted.append((user, str(e.event_id), e.event_type, body))
        owner = e.data.get("destination_user_id")
        if e.event_type.startswith("transaction.") and e.data.get("type") == "deposit" and owner:
            tx = uuid.UUID(str(e.data["transaction_id"]))
            await session.execute(
                pg_insert(DepositOwner)
                .values(transaction_id=tx, user_id=uuid.UUID(str(owner)))
                .on_conflict_do_nothing()
            )
            routed = (
                await session.execute(
                    delete(WebhookRoute)
                    .where(WebhookRoute.transaction_id == tx)
                    .returning(WebhookRoute.event_id, WebhookRoute.event_type, WebhookRoute.body)
                )
            ).all()
            wanted += [(str(owner), str(r.event_id), r.event_type, r.body) for r in routed]
    if not wanted:
        return
    await session.flush()
    endpoints = (
        await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.user_id, WebhookEndpoint.events).where(
                WebhookEndpoint.user_id.in_({uuid.UUID(w[0]) for w in wanted}),
                WebhookEndpoint.status == "enabled",
            )
        )
    ).all()
    by_user: dict[str, list[Any]] = {}
    for ep in endpoints:
        by_user.setdefault(str(ep.user_id), []).append(ep)
    rows = [
        (ep.id, event_id, kind, body)
        for user, event_id, kind, body in wanted
        for ep in by_user.get(user, [])
        if kind in ep.events
    ]
    if rows:
        await session.execute(
            _ADD_DELIVERIES,
            {
                "id": [uuid.uuid4() for _ in rows],
                "endpoint_id": [r[0] for r in rows],
                "event_id": [uuid.UUID(r[1]) for r in rows],
                "event_type": [r[2] for r in rows],
                "body": [r[3] for r in rows],
            },
        )
