"""HTTP routes of the transactions service: parse, call the use case, shape the response."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter

from paysys.kit import plain
from paysys.kit.auth import CurrentUserId, current_user_id
from paysys.kit.deps import PROBLEM
from paysys.kit.errors import PROBLEM_JSON, ServiceUnavailable, ValidationFailed, problem_body
from paysys.kit.money import format_amount
from paysys.transactions import service
from paysys.transactions.clients import OutcomeUnknown
from paysys.transactions.exceptions import TransactionNotFound
from paysys.transactions.group import GroupCommit
from paysys.transactions.models import Status, Transaction
from paysys.transactions.saga import Saga
from paysys.transactions.schemas import (
    BatchIn,
    BatchOut,
    CaptureIn,
    CreateIn,
    RefundIn,
    TransactionList,
    TransactionOut,
    VoidIn,
    dump,
)

router = APIRouter(prefix="/transactions", tags=["transactions"])


# -- answers: rendered here, handed down to the saga (app.py), which keeps a keyed
# request's answer with its terminal state


def to_out(tx: Transaction) -> TransactionOut:
    """The declared model of a transaction (single reads, lists), made from `view`: the
    rules of the answer are written once."""
    return TransactionOut.model_validate(view(tx))


def view(tx: Transaction) -> dict[str, Any]:
    """`TransactionOut` as JSON, built straight from the row, without a pydantic model
    per transaction: a bulk answer renders a thousand of them, and the model's
    validation and serialization were most of that. tests/unit/test_transaction_view.py
    holds it equal to the document pydantic makes of the fields, and to itself through
    `TransactionOut`. The captured amount shows only once COMPLETED; no refund is 0."""
    currency = tx.currency
    captured = tx.captured_amount
    return {
        "id": str(tx.id),
        "type": tx.type,
        "status": str(tx.status),
        "amount": format_amount(tx.amount, currency),
        "currency": currency,
        "source_wallet_id": _uuid(tx.source_wallet_id),
        "destination_wallet_id": _uuid(tx.destination_wallet_id),
        "description": tx.description,
        "failure_code": tx.failure_code,
        "captured_amount": None
        if captured is None or tx.status != Status.COMPLETED
        else format_amount(captured, currency),
        "refunded_amount": format_amount(tx.refunded_amount or 0, currency),
        "refunded_transaction_id": _uuid(tx.refunded_transaction_id),
        "authorization_expires_at": _instant(tx.authorization_expires_at),
        "created_at": _instant(tx.created_at),
        "updated_at": _instant(tx.updated_at),
    }


def _uuid(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _instant(value: datetime | None) -> str | None:
    """An instant as pydantic writes it in JSON: ISO 8601, UTC as "Z"."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def failure_body(tx: Transaction) -> dict[str, Any]:
    code = tx.failure_code or "PAYMENT_GATEWAY_ERROR"
    return problem_body(
        400,
        code,
        f"The {tx.type} did not go through: {code}.",
        transaction_id=str(tx.id),
        transaction=view(tx),
    )


def final_response(tx: Transaction) -> tuple[int, dict[str, Any]]:
    """The answer of POST /transactions/create once the transaction ended (or, a
    manual-capture payment, was authorized): 400 when it FAILED, else 201. An
    authorization is a 201 whatever became of it before this answer (another runner
    may have ended the create, and a capture, void or expiry come after it)."""
    if tx.status == Status.FAILED:
        return 400, failure_body(tx)
    return 201, view(tx)


def batch_answer(txs: list[Transaction]) -> tuple[int, dict[str, Any]]:
    """The answer of a bulk request, once its transactions ended."""
    return 200, {"items": [view(tx) for tx in txs]}


async def get_saga(request: Request) -> Saga:
    saga: Saga = request.app.state.saga
    return saga


SagaDep = Annotated[Saga, Depends(get_saga)]


async def get_group(request: Request) -> GroupCommit:
    group: GroupCommit = request.app.state.group
    return group


GroupDep = Annotated[GroupCommit, Depends(get_group)]
# A step on an existing transaction (refund, capture, void) may also be forbidden to a
# party who sees it (the payer capturing, the payer refunding).
STEP_PROBLEMS = {
    **PROBLEM,
    403: {"content": {PROBLEM_JSON: {}}},
    503: {"content": {PROBLEM_JSON: {}}},
}
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


def _json(status: int, body: dict[str, object], replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    media = PROBLEM_JSON if status >= 400 else "application/json"
    # orjson: the same compact UTF-8 text as JSONResponse's, a tenth of its CPU
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=media)


# The operation as FastAPI declares it: its signature makes the OpenAPI entry, and
# served by FastAPI (route_class_override removed) it answers as `serve_create` does,
# which serves the requests (kit.plain). A comment, not a docstring: that would become
# the operation's public description.
async def create_transaction(
    user_id: CurrentUserId,
    saga: SagaDep,
    group: GroupDep,
    body: Annotated[CreateIn, Body()],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _create(saga, group, user_id, body, idempotency_key)


CREATE_IN: TypeAdapter[CreateIn] = TypeAdapter(CreateIn)


async def serve_create(request: Request) -> Response:
    """POST /transactions/create, the money path's busiest route, as a plain handler:
    the same checks, in FastAPI's order (the caller, then the header and the body, all
    their errors at once), the same answers."""
    user_id = await current_user_id(request)
    errors: list[Any] = []
    key = plain.idempotency_key(request, errors)
    body = await plain.body_of(request, CREATE_IN, errors)
    plain.refuse(errors)
    return await _create(request.app.state.saga, request.app.state.group, user_id, body, key)


async def _create(
    saga: Saga, group: GroupCommit, user_id: uuid.UUID, body: CreateIn, key: str | None
) -> Response:
    keyed = _keyed(saga, body, key)
    try:
        tx = await service.create(saga, group, user_id, body, keyed)
    except service.Replay as replay:
        return _json(replay.status, replay.body, replayed=replay.replayed)
    except OutcomeUnknown:
        # Before any transaction existed (a service did not answer validation): the
        # key was not taken, a retry may use it.
        raise ServiceUnavailable("A service is not available; retry later.") from None
    return _json(*final_response(tx))


router.add_api_route(
    "/create",
    create_transaction,
    methods=["POST"],
    status_code=201,
    response_model=TransactionOut,
    responses={**PROBLEM, 503: {"content": {PROBLEM_JSON: {}}}},
    summary="Create a deposit, transfer or payment",
    route_class_override=plain.served_by(serve_create),
)


@router.post(
    "/batch",
    status_code=200,
    response_model=BatchOut,
    responses={**PROBLEM, 503: {"content": {PROBLEM_JSON: {}}}},
    summary="Many transfers or payments at once (payouts, payroll)",
)
async def create_batch(
    user_id: CurrentUserId,
    saga: SagaDep,
    group: GroupDep,
    body: BatchIn,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    keyed = _keyed(saga, body, idempotency_key)
    try:
        ended = await service.create_batch(saga, group, user_id, body.items, keyed)
    except service.Replay as replay:
        return _json(replay.status, replay.body, replayed=replay.replayed)
    except OutcomeUnknown:
        raise ServiceUnavailable("A service is not available; retry later.") from None
    # A keyed batch's answer was made once, to be stored with its end: not again.
    return _json(*(ended.answer or batch_answer(ended.txs)))


@router.post(
    "/{transaction_id}/refund",
    status_code=201,
    response_model=TransactionOut,
    responses=STEP_PROBLEMS,
    summary="Refund a completed transfer or payment, in full or in part",
)
async def refund_transaction(
    transaction_id: str,
    user_id: CurrentUserId,
    saga: SagaDep,
    group: GroupDep,
    body: Annotated[RefundIn | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    body = body or RefundIn()
    keyed = _keyed(saga, body, idempotency_key)
    try:
        tx = await service.refund(saga, group, user_id, _tx_id(transaction_id), body, keyed)
    except service.Replay as replay:
        return _json(replay.status, replay.body, replayed=replay.replayed)
    return _json(*final_response(tx))


@router.post(
    "/{transaction_id}/capture",
    status_code=200,
    response_model=TransactionOut,
    responses=STEP_PROBLEMS,
    summary="Capture an authorized payment, in full or in part (the merchant)",
)
async def capture_transaction(
    transaction_id: str,
    user_id: CurrentUserId,
    saga: SagaDep,
    group: GroupDep,
    body: Annotated[CaptureIn | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    body = body or CaptureIn()
    keyed = _keyed(saga, body, idempotency_key)
    tx_id = _tx_id(transaction_id)
    return await _step(saga, service.capture(saga, group, user_id, tx_id, body, keyed))


@router.post(
    "/{transaction_id}/void",
    status_code=200,
    response_model=TransactionOut,
    responses=STEP_PROBLEMS,
    summary="Void an authorized payment: its money held is released (payer or merchant)",
)
async def void_transaction(
    transaction_id: str,
    user_id: CurrentUserId,
    saga: SagaDep,
    body: Annotated[VoidIn | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    keyed = _keyed(saga, body or VoidIn(), idempotency_key)
    return await _step(saga, service.void(saga, user_id, _tx_id(transaction_id), keyed))


async def _step(saga: Saga, done: Awaitable[Transaction]) -> Response:
    """The answer of a capture or a void: the transaction, or the key's replay."""
    try:
        tx = await done
    except service.Replay as replay:
        return _json(replay.status, replay.body, replayed=replay.replayed)
    return _json(*saga.step_answer(tx))


def _tx_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise TransactionNotFound("No such transaction.") from None


def _keyed(saga: Saga, body: BaseModel, idempotency_key: str | None) -> service.Keyed | None:
    if idempotency_key is None:
        return None
    digest = service.request_hash(dump(body), saga.settings.idempotency_hash_key)
    return service.Keyed(idempotency_key, digest)


def _encode_cursor(created_at: datetime, tx_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(tx_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    # A cursor comes back from the client: anything but exactly what _encode_cursor
    # wrote (two strings, an aware timestamp and a UUID) is refused, never half-used.
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parsed = json.loads(raw)
        if not (
            isinstance(parsed, list)
            and len(parsed) == 2
            and all(isinstance(p, str) for p in parsed)
        ):
            raise ValueError("cursor shape")
        created = datetime.fromisoformat(parsed[0])
        if created.tzinfo is None:
            raise ValueError("naive cursor time")
        return created, uuid.UUID(parsed[1])
    except (ValueError, TypeError, binascii.Error, OverflowError):
        raise ValidationFailed(
            "The cursor is not valid.", errors=[{"loc": ["query", "cursor"], "msg": "invalid"}]
        ) from None


@router.get("", response_model=TransactionList, responses=PROBLEM)
async def list_transactions(
    user_id: CurrentUserId,
    saga: SagaDep,
    wallet_id: uuid.UUID | None = None,
    type: Literal["deposit", "transfer", "payment", "refund"] | None = None,
    status: Literal["PENDING", "PROCESSING", "AUTHORIZED", "COMPLETED", "FAILED", "VOIDED"]
    | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TransactionList:
    after = _decode_cursor(cursor) if cursor else None
    items, more = await service.page(
        saga.db, user_id, wallet_id=wallet_id, type_=type, status=status, after=after, limit=limit
    )
    next_cursor = _encode_cursor(items[-1].created_at, items[-1].id) if more else None
    return TransactionList(items=[to_out(t) for t in items], next_cursor=next_cursor)


@router.get("/{transaction_id}", response_model=TransactionOut, responses=PROBLEM)
async def get_transaction(
    transaction_id: str, user_id: CurrentUserId, saga: SagaDep
) -> TransactionOut:
    return to_out(await service.visible(saga.db, _tx_id(transaction_id), user_id))
