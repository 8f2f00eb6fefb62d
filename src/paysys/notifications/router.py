"""HTTP routes of the notifications service: its webhooks API (the rest of the service
is a Kafka consumer and two senders)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from paysys.kit.auth import CurrentUserId
from paysys.kit.deps import PROBLEM, get_runtime
from paysys.kit.errors import ValidationFailed
from paysys.kit.events import TOPICS
from paysys.kit.runtime import Runtime
from paysys.notifications import service, webhooks
from paysys.notifications.exceptions import UrlRefused, WebhookNotFound
from paysys.notifications.schemas import (
    DeliveryList,
    DeliveryOut,
    WebhookCreated,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from paysys.notifications.settings import NotificationsSettings

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
NotificationsRuntime = Annotated[Runtime[NotificationsSettings], Depends(get_runtime)]


def parse_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise WebhookNotFound("No such webhook endpoint.") from None


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    return [str(info[4][0]) for info in infos]


@router.post("", status_code=201, response_model=WebhookCreated, responses=PROBLEM)
async def create_webhook(
    body: WebhookIn, user_id: CurrentUserId, rt: NotificationsRuntime
) -> WebhookCreated:
    """A new endpoint. Its `secret` signs every delivery, and is shown here only."""
    events = body.events or list(TOPICS)
    if unknown := webhooks.topics_valid(events):
        raise ValidationFailed(
            "Unknown event types.",
            errors=[
                {"loc": ["body", "events"], "msg": f"unknown: {unknown}", "type": "value_error"}
            ],
        )
    public_only = rt.settings.env not in ("local", "test")
    try:
        await webhooks.check_url(body.url, public_only, _resolve)
    except webhooks.UrlNotAllowed as exc:
        raise UrlRefused(str(exc)) from None
    async with rt.db.uow() as session:
        row, secret = await service.create_endpoint(
            session, rt.settings.cipher, user_id, body.url, list(dict.fromkeys(events))
        )
        await rt.records_or_fail.audit(
            session, "webhook.created", str(user_id), {"webhook_id": str(row.id)}
        )
    return WebhookCreated(**webhooks.summary(row), secret=secret)


@router.get("", response_model=WebhookList, responses=PROBLEM)
async def list_webhooks(user_id: CurrentUserId, rt: NotificationsRuntime) -> WebhookList:
    async with rt.db.uow() as session:
        rows = await service.endpoints_of(session, user_id)
    return WebhookList(items=[WebhookOut(**webhooks.summary(r)) for r in rows])


@router.get("/{webhook_id}", response_model=WebhookOut, responses=PROBLEM)
async def get_webhook(
    webhook_id: str, user_id: CurrentUserId, rt: NotificationsRuntime
) -> WebhookOut:
    async with rt.db.uow() as session:
        row = await service.endpoint(session, user_id, parse_id(webhook_id))
    return WebhookOut(**webhooks.summary(row))


@router.delete("/{webhook_id}", status_code=204, responses=PROBLEM)
async def delete_webhook(
    webhook_id: str, user_id: CurrentUserId, rt: NotificationsRuntime
) -> Response:
    """The endpoint and its deliveries: nothing more is sent to it."""
    wid = parse_id(webhook_id)
    async with rt.db.uow() as session:
        await service.delete_endpoint(session, user_id, wid)
        await rt.records_or_fail.audit(
            session, "webhook.deleted", str(user_id), {"webhook_id": str(wid)}
        )
    return Response(status_code=204)


def _delivery(row: Any) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        created_at=row.created_at,
    )


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList, responses=PROBLEM)
async def list_deliveries(
    webhook_id: str,
    user_id: CurrentUserId,
    rt: NotificationsRuntime,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> DeliveryList:
    """The endpoint's deliveries, newest first."""
    async with rt.db.uow() as session:
        rows = await service.deliveries_of(session, user_id, parse_id(webhook_id), limit)
    return DeliveryList(items=[_delivery(r) for r in rows])


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=DeliveryOut,
    responses=PROBLEM,
)
async def retry_delivery(
    webhook_id: str, delivery_id: str, user_id: CurrentUserId, rt: NotificationsRuntime
) -> DeliveryOut:
    """Sent again soon, whatever its status."""
    try:
        did = uuid.UUID(delivery_id)
    except ValueError:
        did = uuid.UUID(int=0)
    async with rt.db.uow() as session:
        row = await service.retry_delivery(session, user_id, parse_id(webhook_id), did)
    return _delivery(row)
