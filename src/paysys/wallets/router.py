"""HTTP routes of the wallets service: parse, call the service, shape the response."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, TypeAdapter
from sqlalchemy.exc import IntegrityError

from paysys.kit import plain
from paysys.kit.auth import CurrentUserId, require_internal
from paysys.kit.deps import PROBLEM, RuntimeDep, get_runtime
from paysys.kit.errors import ValidationFailed
from paysys.kit.events import utcnow
from paysys.kit.metrics import WALLET_BATCH_SIZE as BATCH_SIZE
from paysys.kit.money import format_amount
from paysys.kit.runtime import Runtime
from paysys.kit.text import Input
from paysys.wallets import repository, service, statements
from paysys.wallets.cache import WalletCache
from paysys.wallets.clients import Users
from paysys.wallets.exceptions import HoldEndedError, HoldNotFound, WalletNotFound
from paysys.wallets.models import Wallet
from paysys.wallets.schemas import (
    BalanceAtOut,
    BatchOut,
    CaptureBatchIn,
    CaptureHoldIn,
    CaptureItemIn,
    CreateWalletIn,
    FundsIn,
    FundsOut,
    HoldBatchIn,
    HoldIn,
    HoldOut,
    LimitsIn,
    LimitsOut,
    PayeeOut,
    RefundIn,
    StatementOut,
    TransferBatchIn,
    TransferIn,
    TransferOut,
    WalletList,
    WalletOut,
)
from paysys.wallets.settings import WalletsSettings


async def get_cache(request: Request) -> WalletCache:
    cache: WalletCache = request.app.state.cache
    return cache


Cache = Annotated[WalletCache, Depends(get_cache)]

router = APIRouter(prefix="/wallets", tags=["wallets"])


def parse_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise WalletNotFound("No such wallet.") from None


WalletsRuntime = Annotated[Runtime[WalletsSettings], Depends(get_runtime)]


async def _users(request: Request) -> Users:
    users: Users = request.app.state.users
    return users


UsersDep = Annotated[Users, Depends(_users)]


@router.post("/create", status_code=201, response_model=WalletOut, responses=PROBLEM)
async def create_wallet(
    user_id: CurrentUserId,
    rt: RuntimeDep,
    cache: Cache,
    users: UsersDep,
    body: CreateWalletIn | None = None,
) -> WalletOut:
    currency = body.currency if body else "USD"
    owner = await users.owner(user_id)  # its account type: which maximums its limits have
    async with rt.db.uow() as session:
        wallet = await service.create(
            session,
            rt.outbox_or_fail,
            user_id,
            currency,
            owner.account_type if owner else None,
        )
        await rt.records_or_fail.audit(
            session, "wallet.created", str(user_id), {"wallet_id": str(wallet.id)}
        )
    state = service.to_state(wallet)
    await cache.put(state)
    return service.to_out(state)


@router.get("", response_model=WalletList, responses=PROBLEM)
async def list_wallets(user_id: CurrentUserId, rt: RuntimeDep) -> WalletList:
    async with rt.db.uow() as session:
        wallets = await repository.list_for(session, user_id)
    return WalletList(items=[service.to_out(service.to_state(w)) for w in wallets])


@router.get("/{wallet_id}", response_model=WalletOut, responses=PROBLEM)
async def get_wallet(
    wallet_id: str, user_id: CurrentUserId, rt: RuntimeDep, cache: Cache
) -> WalletOut:
    return service.to_out(await _owned_state(parse_id(wallet_id), user_id, rt, cache))


async def _owned_state(
    wid: uuid.UUID, user_id: uuid.UUID, rt: Runtime[Any], cache: WalletCache
) -> dict[str, Any]:
    """The caller's wallet (cached), or 404 as for a wallet that does not exist."""
    state = await cache.get(wid)
    if state is None:
        async with rt.db.uow() as session:
            wallet = await service.owned(session, wid, user_id)
        state = service.to_state(wallet)
        await cache.put(state)
    if state["user_id"] != str(user_id):
        raise WalletNotFound("No such wallet.")
    return state


@router.get("/{wallet_id}/balance", response_model=BalanceAtOut, responses=PROBLEM)
async def balance_at(
    wallet_id: str,
    user_id: CurrentUserId,
    rt: RuntimeDep,
    cache: Cache,
    at: Annotated[AwareDatetime | None, Query(description="RFC 3339; default: now")] = None,
) -> BalanceAtOut:
    """The balance that every ledger entry before `at` adds up to (holds aside)."""
    wid = parse_id(wallet_id)
    state = await _owned_state(wid, user_id, rt, cache)
    at = _in_utc(at, "at") or utcnow()
    balance = await service.balance_at(rt.db, wid, at)
    return BalanceAtOut(
        wallet_id=wid,
        currency=state["currency"],
        at=at,
        balance=format_amount(balance, state["currency"]),
    )


def _in_utc(value: datetime | None, name: str) -> datetime | None:
    """An instant the ledger can hold: one that is still within years 1-9999 in UTC."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed(
            f"`{name}` is out of range.",
            errors=[{"loc": ["query", name], "msg": "out of range", "type": "value_error"}],
        ) from None


STATEMENT_TYPES = {
    "application/json": {"schema": {"$ref": "#/components/schemas/StatementOut"}},
    "text/csv": {"schema": {"type": "string"}},
    "application/pdf": {"schema": {"type": "string", "format": "binary"}},
}


def _wanted(accept: str) -> str:
    """The statement's form from the Accept header: CSV or PDF when asked, else JSON."""
    for part in accept.split(","):
        kind = part.split(";")[0].strip().lower()
        if kind in ("text/csv", "application/pdf", "application/json"):
            return kind
    return "application/json"


@router.get(
    "/{wallet_id}/statement",
    response_model=StatementOut,
    responses={**PROBLEM, 200: {"content": STATEMENT_TYPES}},
)
async def get_statement(
    wallet_id: str,
    user_id: CurrentUserId,
    rt: RuntimeDep,
    cache: Cache,
    users: UsersDep,
    request: Request,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
) -> Response:
    """The ledger of [from, to) with its opening and closing balances: JSON (default),
    CSV (streamed) or PDF by the Accept header."""
    wid = parse_id(wallet_id)
    state = await _owned_state(wid, user_id, rt, cache)
    currency = state["currency"]
    start, end = service.period(_in_utc(start, "from"), _in_utc(end, "to"), utcnow())
    kind = _wanted(request.headers.get("accept", ""))
    name = f"statement-{wid}-{start.date()}-{end.date()}"
    if kind == "text/csv":
        rows = service.stream_entries(rt.db, wid, start, end)
        return StreamingResponse(
            statements.csv_chunks(rows, currency),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    st = await service.statement(rt.db, wid, start, end)
    if kind == "application/pdf":
        owner = await users.owner(user_id)
        summary = statements.Summary(
            str(wid),
            currency,
            owner.full_name if owner else "",
            start,
            end,
            st.opening,
            st.closing,
            st.credits,
            st.debits,
            utcnow(),
        )
        return Response(
            statements.pdf_bytes(summary, st.rows),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
        )
    body = {
        "wallet_id": str(wid),
        "currency": currency,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "opening_balance": format_amount(st.opening, currency),
        "closing_balance": format_amount(st.closing, currency),
        "total_credits": format_amount(st.credits, currency),
        "total_debits": format_amount(st.debits, currency),
        "entries": [statements.entry(r, currency) for r in st.rows],
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def _limits_wallet(
    wid: uuid.UUID, user_id: uuid.UUID, rt: Runtime[Any], users: Users
) -> Wallet:
    async with rt.db.uow() as session:
        wallet = await service.owned(session, wid, user_id)
        if wallet.account_type is None:  # a wallet from before limits: learn it now
            owner = await users.owner(user_id)
            if owner is not None:
                wallet.account_type = owner.account_type  # written at the commit
    return wallet


@router.get("/{wallet_id}/limits", response_model=LimitsOut, responses=PROBLEM)
async def get_limits(
    wallet_id: str, user_id: CurrentUserId, rt: WalletsRuntime, users: UsersDep
) -> LimitsOut:
    """The wallet's spending limits, what is spent against them, and their maximums."""
    wallet = await _limits_wallet(parse_id(wallet_id), user_id, rt, users)
    return service.limits_out(wallet, rt.settings.maximums_minor, utcnow())


@router.put("/{wallet_id}/limits", response_model=LimitsOut, responses=PROBLEM)
async def put_limits(
    wallet_id: str,
    body: LimitsIn,
    user_id: CurrentUserId,
    rt: WalletsRuntime,
    users: UsersDep,
) -> LimitsOut:
    """Lowers (or raises, up to the maximum) the wallet's limits; null: the maximum."""
    wid = parse_id(wallet_id)
    await _limits_wallet(wid, user_id, rt, users)
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    async with rt.db.uow() as session:
        wallet = await service.set_limits(
            session, wid, user_id, changes, rt.settings.maximums_minor
        )
        await rt.records_or_fail.audit(
            session,
            "wallet.limits_changed",
            str(user_id),
            {"wallet_id": str(wid), **{k: v for k, v in changes.items()}},
        )
    return service.limits_out(wallet, rt.settings.maximums_minor, utcnow())


@router.get("/{wallet_id}/payee", response_model=PayeeOut, responses=PROBLEM)
async def get_payee(
    wallet_id: str, _user_id: CurrentUserId, rt: RuntimeDep, cache: Cache, request: Request
) -> PayeeOut:
    """Who will receive money sent to a wallet (confirmation of payee): anyone signed
    in may ask, and learns the currency, the account type and a name, nothing else."""
    wid = parse_id(wallet_id)
    state = await cache.get(wid)
    if state is None:
        async with rt.db.uow() as session:
            wallet = await repository.get(session, wid)
        if wallet is None:
            raise WalletNotFound("No such wallet.")
        state = service.to_state(wallet)
        await cache.put(state)
    users: Users = request.app.state.users
    owner = await users.owner(uuid.UUID(state["user_id"]))
    if owner is None:
        raise WalletNotFound("No such wallet.")
    return PayeeOut(
        wallet_id=wid,
        currency=state["currency"],
        name=service.payee_name(owner.full_name, owner.account_type),
        account_type=owner.account_type,
    )


async def _set_status(
    wallet_id: str, user_id: uuid.UUID, rt: RuntimeDep, cache: WalletCache, status: str
) -> WalletOut:
    action = "wallet.deactivated" if status == "INACTIVE" else "wallet.activated"
    async with rt.db.uow() as session:
        wallet = await service.set_status(session, parse_id(wallet_id), user_id, status)
        await rt.records_or_fail.audit(session, action, str(user_id), {"wallet_id": wallet_id})
    state = service.to_state(wallet)
    await cache.put(state)
    return service.to_out(state)


@router.post("/{wallet_id}/deactivate", response_model=WalletOut, responses=PROBLEM)
async def deactivate(
    wallet_id: str, user_id: CurrentUserId, rt: RuntimeDep, cache: Cache
) -> WalletOut:
    return await _set_status(wallet_id, user_id, rt, cache, "INACTIVE")


@router.post("/{wallet_id}/activate", response_model=WalletOut, responses=PROBLEM)
async def activate(
    wallet_id: str, user_id: CurrentUserId, rt: RuntimeDep, cache: Cache
) -> WalletOut:
    return await _set_status(wallet_id, user_id, rt, cache, "ACTIVE")


# Internal: only other paysys processes (with the internal credential) get here; the
# gateway has no route to these paths.
internal = APIRouter(
    prefix="/wallets", include_in_schema=False, dependencies=[Depends(require_internal)]
)


async def _change(
    rt: RuntimeDep, cache: WalletCache, wallet_id: str, body: FundsIn, operation: str
) -> FundsOut:
    wid = parse_id(wallet_id)
    changed: Wallet | None
    try:
        async with rt.db.uow() as session:
            result, changed = await service.change_balance(
                session,
                rt.outbox_or_fail,
                wid,
                body.transaction_id,
                operation,
                body.amount,
                body.currency,
                service.About(body.type, body.description, body.counterparty_wallet_id),
            )
    except IntegrityError:
        # A concurrent twin with the same (transaction_id, operation) won; its
        # result is the answer, and this attempt moved nothing.
        async with rt.db.uow() as session:
            replayed = await service.replay(session, wid, body.transaction_id, operation)
        if replayed is None:
            raise
        return replayed
    if isinstance(result, service.Refused):
        raise result.error()  # committed above: asked again, it answers the same
    if changed is not None:
        await cache.put(service.to_state(changed))
    return result


class FenceIn(Input):
    transaction_id: uuid.UUID


# Other internal reads and commands live under /internal, which the gateway never routes.
internal_misc = APIRouter(
    prefix="/internal/wallets", include_in_schema=False, dependencies=[Depends(require_internal)]
)


TRANSFER_IN = TypeAdapter(TransferIn)
TRANSFER_BATCH_IN = TypeAdapter(TransferBatchIn)


def _move(body: TransferIn) -> service.Move:
    return service.Move(
        body.transaction_id,
        body.source_wallet_id,
        body.destination_wallet_id,
        body.amount_minor,
        body.currency,
        body.correlation_id,
        body.kind,
        body.description,
    )


async def _apply(request: Request, moves: list[service.Move]) -> service.Applied:
    rt: Runtime[Any] = request.app.state.rt
    cache: WalletCache = request.app.state.cache
    settings: WalletsSettings = rt.settings
    applied = await service.move_batch(rt.db, rt.outbox_or_fail, moves, settings.maximums_minor)
    if applied.states:
        await cache.put_many(applied.states)
    if applied.replayed:
        await cache.forget(applied.replayed)
    BATCH_SIZE.observe(len(moves))
    return applied


async def transfer(request: Request) -> Response:
    """POST /internal/transfers: a transfer or payment's whole move, once per
    transaction id (a batch of one). A plain Starlette route, as the batch's: the money
    path's busiest endpoints, where FastAPI's dependency, body and response-model
    machinery doubled the cost of serving the request."""
    await require_internal(request)
    body: TransferIn = await plain.parsed(request, TRANSFER_IN)
    if body.source_wallet_id == body.destination_wallet_id:
        raise ValidationFailed("Source and destination are the same wallet.", code="SAME_WALLET")
    (outcome,) = (await _apply(request, [_move(body)])).outcomes
    if isinstance(outcome, service.Missing):
        raise WalletNotFound("No such wallet.")
    if isinstance(outcome, service.Refused):
        raise outcome.error()
    return Response(
        TransferOut(transaction_id=body.transaction_id).model_dump_json(),
        media_type="application/json",
    )


async def transfer_batch(request: Request) -> Response:
    """POST /internal/transfers/batch: many moves, in one database transaction and one
    round trip, applied in order; each keeps its own outcome (see service.move_batch)."""
    await require_internal(request)
    body: TransferBatchIn = await plain.parsed(request, TRANSFER_BATCH_IN)
    applied = await _apply(request, [_move(item) for item in body.items])
    return _results(body.items, applied.outcomes, service.Moved, "moved")


def _results(
    items: Sequence[TransferIn | HoldIn | CaptureItemIn],
    outcomes: Sequence[object],
    went: type,
    status: str,
) -> Response:
    """A batch's answer, item by item: `status` for those that went through, else
    refused with the code (WALLET_NOT_FOUND: a wallet that does not exist, nothing kept;
    HOLD_NOT_FOUND: no hold for a capture), or "ended" (a capture of a hold released
    already: its status is the code)."""

    def result(item: TransferIn | HoldIn | CaptureItemIn, outcome: object) -> dict[str, Any]:
        if isinstance(outcome, went):
            status_, code = status, None
        elif isinstance(outcome, service.Refused | service.TooMuch):
            status_, code = "refused", outcome.code
        elif isinstance(outcome, service.HoldEnded):
            status_, code = "ended", outcome.status
        else:
            status_, code = "refused", "HOLD_NOT_FOUND" if outcome is None else "WALLET_NOT_FOUND"
        return {"transaction_id": item.transaction_id, "status": status_, "code": code}

    out = BatchOut.model_validate(
        {"items": [result(i, o) for i, o in zip(items, outcomes, strict=True)]}
    )
    return Response(out.model_dump_json(), media_type="application/json")


HOLD_BATCH_IN = TypeAdapter(HoldBatchIn)


async def hold_batch(request: Request) -> Response:
    """POST /internal/holds/batch: many authorizations' holds, in one database
    transaction and one round trip, in order; each keeps its own outcome (see
    service.hold_batch). A plain Starlette route, as the transfer batch's."""
    await require_internal(request)
    body: HoldBatchIn = await plain.parsed(request, HOLD_BATCH_IN)
    rt: Runtime[Any] = request.app.state.rt
    settings: WalletsSettings = rt.settings
    outcomes, states = await service.hold_batch(
        rt.db,
        rt.outbox_or_fail,
        [
            service.HoldItem(
                i.transaction_id,
                i.source_wallet_id,
                i.destination_wallet_id,
                i.amount_minor,
                i.currency,
                i.description,
                i.correlation_id,
            )
            for i in body.items
        ],
        settings.maximums_minor,
    )
    await _cache_step(request.app.state.cache, outcomes, *states)
    return _results(body.items, outcomes, service.Held, "held")


CAPTURE_BATCH_IN = TypeAdapter(CaptureBatchIn)


async def capture_batch(request: Request) -> Response:
    """POST /internal/holds/captures: many captures, in one database transaction and
    one round trip, in order; each keeps its own outcome (see service.capture_batch). A
    plain Starlette route, as the other batches'."""
    await require_internal(request)
    body: CaptureBatchIn = await plain.parsed(request, CAPTURE_BATCH_IN)
    rt: Runtime[Any] = request.app.state.rt
    outcomes, states = await service.capture_batch(
        rt.db,
        rt.outbox_or_fail,
        [
            service.CaptureItem(i.transaction_id, i.amount_minor, i.correlation_id)
            for i in body.items
        ],
    )
    await _cache_step(request.app.state.cache, outcomes, *states)
    return _results(body.items, outcomes, service.Captured, "captured")


@internal_misc.post("/credit-fence")
async def credit_fence(body: FenceIn, rt: RuntimeDep) -> dict[str, bool]:
    async with rt.db.uow() as session:
        credited = await service.fence_credit(session, body.transaction_id)
    return {"credited": credited}


@internal.post("/{wallet_id}/add-funds", response_model=FundsOut)
async def add_funds(wallet_id: str, body: RefundIn, rt: RuntimeDep, cache: Cache) -> FundsOut:
    return await _change(rt, cache, wallet_id, body, body.operation)


@internal.post("/{wallet_id}/deduct-funds", response_model=FundsOut)
async def deduct_funds(wallet_id: str, body: FundsIn, rt: RuntimeDep, cache: Cache) -> FundsOut:
    """A debit of one wallet (a deposit's refund to its card), once per transaction id,
    against the available balance."""
    return await _change(rt, cache, wallet_id, body, "debit")


@internal_misc.get("/{wallet_id}", response_model=None)
async def internal_get(wallet_id: str, rt: RuntimeDep) -> dict[str, object]:
    """A fresh (uncached) read of any wallet, for the transactions service."""
    async with rt.db.uow() as session:
        wallet = await repository.get(session, parse_id(wallet_id))
    if wallet is None:
        raise WalletNotFound("No such wallet.")
    state = service.to_state(wallet)
    return {**state, "balance_minor": wallet.balance}


# -- holds (internal): authorize now, capture later

holds = APIRouter(
    prefix="/internal/holds", include_in_schema=False, dependencies=[Depends(require_internal)]
)


async def _hold_step(cache: WalletCache, outcome: Any) -> Any:
    if outcome is None:
        raise HoldNotFound("No such hold.")
    if isinstance(outcome, service.Missing):
        raise WalletNotFound("No such wallet.")
    if isinstance(outcome, service.Refused):
        raise outcome.error()
    if isinstance(outcome, service.HoldEnded):
        raise HoldEndedError(f"The hold is {outcome.status} already.")
    await _cache_step(cache, [outcome])
    return outcome


async def _cache_step(
    cache: WalletCache, outcomes: Sequence[object], *states: dict[str, Any]
) -> None:
    """Writes the changed wallets' states through, and drops those of replays' wallets
    (service.Held)."""
    changed = [*states, *(s for o in outcomes for s in getattr(o, "states", None) or [])]
    if changed:
        await cache.put_many(changed)
    replayed = {w for o in outcomes for w in getattr(o, "replayed", ())}
    if replayed:
        await cache.forget(replayed)


@holds.post("", response_model=HoldOut)
async def hold(body: HoldIn, rt: WalletsRuntime, cache: Cache) -> HoldOut:
    """Reserves the money of a manual-capture payment, once per transaction id."""
    outcome = await service.hold(
        rt.db,
        rt.outbox_or_fail,
        body.transaction_id,
        body.source_wallet_id,
        body.destination_wallet_id,
        body.amount_minor,
        body.currency,
        rt.settings.maximums_minor,
        body.description,
    )
    await _hold_step(cache, outcome)
    return HoldOut(transaction_id=body.transaction_id, status="held")


@holds.post("/{transaction_id}/capture", response_model=HoldOut)
async def capture(
    transaction_id: uuid.UUID, body: CaptureHoldIn, rt: RuntimeDep, cache: Cache
) -> HoldOut:
    """Takes part or all of a hold, once: asked again, the first capture's amount."""
    outcome = await service.capture(rt.db, rt.outbox_or_fail, transaction_id, body.amount_minor)
    done = await _hold_step(cache, outcome)
    return HoldOut(
        transaction_id=transaction_id, status="captured", captured_amount_minor=done.amount
    )


@holds.post("/{transaction_id}/release", response_model=HoldOut)
async def release(transaction_id: uuid.UUID, rt: RuntimeDep, cache: Cache) -> HoldOut:
    """Gives a hold's money back to what is available (a void, an expiry), once."""
    async with rt.db.uow() as session:
        outcome = await service.release(session, rt.outbox_or_fail, transaction_id)
    await _hold_step(cache, outcome)
    return HoldOut(transaction_id=transaction_id, status="released")
