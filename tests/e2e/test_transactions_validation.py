"""Refusals before any money moves, and what may never be stored: a refused transaction
is born FAILED (nothing for the recovery worker to run), every wallet leg names its
currency, a refused leg stays refused, hostile amounts and cursors are 422, and no
store keeps a card number or CVC in any form a test can recompute."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from paysys.kit.mongo import make_mongo
from tests.conftest import Stack
from tests.e2e.helpers import (
    assert_problem,
    internal_client,
    kafka_events,
    move_out,
    user_with_token,
)
from tests.e2e.money import CARD, balance, db_fetch, deposit, funded_user, move, wallet_for


async def one_failed_event(stack: Stack, tx_id: str) -> dict[str, Any]:
    events = await kafka_events(stack, "transaction.failed", tx_id, 1, timeout=30, linger=1.5)
    assert len({e["event_id"] for e in events}) == 1
    return events[0]


async def row_of(stack: Stack, tx_id: str) -> Any:
    [row] = await db_fetch(
        stack, "SELECT * FROM transactions.transactions WHERE id = $1", uuid.UUID(tx_id)
    )
    return row


Move = Callable[[], Awaitable[httpx.Response]]


async def refused_case(
    api: httpx.AsyncClient, reason: str
) -> tuple[Move, dict[str, str], list[tuple[dict[str, str], str]]]:
    """Sets up a transfer or payment that must be refused for `reason`; returns it (not
    yet sent), and the wallets (with their auth) whose balances must not change."""
    _, auth, src = await funded_user(api, "50.00")
    _, other_auth, dst = await funded_user(api, "0")
    watch = [(auth, src["id"]), (other_auth, dst["id"])]
    kind, source, amount = "transfer", src["id"], "1.00"
    if reason == "SAME_WALLET":
        dst = src
    elif reason == "CURRENCY_MISMATCH":
        # ¥1000 from a JPY wallet to a USD one: the digits must never be read as $1000.00
        jpy = await wallet_for(api, auth, "JPY")
        assert (await deposit(api, auth, jpy["id"], "5000")).status_code == 201
        watch.append((auth, jpy["id"]))
        source, amount = jpy["id"], "1000"
    elif reason == "LIMIT_EXCEEDED":
        amount = "1000000.01"
    elif reason == "WALLET_INACTIVE":
        await api.post(f"/wallets/{dst['id']}/deactivate", headers=other_auth)
    elif reason == "NOT_A_MERCHANT":
        kind = "payment"
    else:
        assert reason == "INSUFFICIENT_FUNDS"
        amount = "50.01"
    return (lambda: move(api, auth, kind, source, dst["id"], amount)), auth, watch


@pytest.mark.parametrize(
    "reason",
    [
        "SAME_WALLET",
        "CURRENCY_MISMATCH",
        "LIMIT_EXCEEDED",
        "WALLET_INACTIVE",
        "NOT_A_MERCHANT",
        "INSUFFICIENT_FUNDS",
    ],
)
async def test_a_refused_transfer_moves_nothing_and_leaves_one_failed_transaction_and_event(
    api: httpx.AsyncClient, stack: Stack, reason: str
) -> None:
    send, auth, watch = await refused_case(api, reason)
    before = [await balance(api, a, w) for a, w in watch]
    body = assert_problem(await send(), 400, reason)
    tx = (await api.get(f"/transactions/{body['transaction_id']}", headers=auth)).json()
    assert (tx["status"], tx["failure_code"]) == ("FAILED", reason)
    event = await one_failed_event(stack, body["transaction_id"])
    assert event["data"]["failure_code"] == reason
    row = await row_of(stack, body["transaction_id"])
    if reason not in ("INSUFFICIENT_FUNDS", "WALLET_INACTIVE"):
        # Refused by validation: the row was born FAILED in the same commit as its
        # event. It never existed in flight, so no crash could let recovery run it.
        assert [s["step"] for s in json.loads(row["steps"])] == ["validate"]
    else:
        # Funds and status are checked by wallets under its locks, in the move itself.
        assert [s["step"] for s in json.loads(row["steps"])] == ["created", "move"]
    ledger = await db_fetch(
        stack,
        "SELECT count(*) AS n FROM wallets.ledger_entries WHERE transaction_id = $1",
        uuid.UUID(body["transaction_id"]),
    )
    assert ledger[0]["n"] == 0  # not a cent moved, not even moved and given back
    assert [await balance(api, a, w) for a, w in watch] == before


async def test_a_wallet_leg_in_another_currency_is_refused(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    _, auth = await user_with_token(api)
    jpy = await wallet_for(api, auth, "JPY")
    usd = await wallet_for(api, auth, "USD")
    assert (await deposit(api, auth, jpy["id"], "5000")).status_code == 201
    async with internal_client(stack) as wallets:
        resp = await wallets.post(
            f"/wallets/{jpy['id']}/add-funds",
            json={"amount": "1000", "currency": "USD", "transaction_id": str(uuid.uuid4())},
        )
        assert_problem(resp, 400, "CURRENCY_MISMATCH")
        # ¥1000 out of the JPY wallet, named in USD: refused, not read as $10.00
        resp = await move_out(wallets, jpy["id"], usd["id"], 1000, currency="USD")
        assert_problem(resp, 400, "CURRENCY_MISMATCH")
    assert await balance(api, auth, jpy["id"]) == "5000"


async def test_a_refused_debit_stays_refused_for_its_transaction_even_after_funding(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    _, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    _, other = await user_with_token(api)
    sink = await wallet_for(api, other)
    tx = str(uuid.uuid4())
    async with internal_client(stack) as wallets:
        first = await move_out(wallets, wallet["id"], sink["id"], 3000, tx)
        assert_problem(first, 400, "INSUFFICIENT_FUNDS")
        assert (await deposit(api, auth, wallet["id"], "100.00")).status_code == 201
        again = await move_out(wallets, wallet["id"], sink["id"], 3000, tx)
        assert_problem(again, 400, "INSUFFICIENT_FUNDS")
    assert await balance(api, auth, wallet["id"]) == "100.00"


async def test_an_amount_beyond_any_limit_is_422_and_writes_nothing(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user, auth, src = await funded_user(api, "10.00")
    _, _, dst = await funded_user(api, "0")
    for amount in ("100000000000000000.00", "99999999999999999999", "9223372036854775808"):
        resp = await move(api, auth, "transfer", src["id"], dst["id"], amount)
        assert_problem(resp, 422, "VALIDATION_ERROR")
        resp = await deposit(api, auth, src["id"], amount)
        assert_problem(resp, 422, "VALIDATION_ERROR")
    rows = await db_fetch(
        stack,
        "SELECT count(*) AS n FROM transactions.transactions WHERE initiator_user_id = $1",
        uuid.UUID(user["id"]),
    )
    assert rows[0]["n"] == 1  # the funding deposit only


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def test_a_crafted_list_cursor_is_422(api: httpx.AsyncClient) -> None:
    _, auth, _ = await funded_user(api, "1.00")
    for cursor in (
        _cursor([1, 2]),
        _cursor([[], {}]),
        _cursor([{"a": 1}, "x"]),
        _cursor(["2026-01-01T00:00:00", str(uuid.uuid4())]),  # no time zone
        _cursor(["2026-01-01T00:00:00+00:00", 5]),
        _cursor(["2026-01-01T00:00:00+00:00", str(uuid.uuid4()), "extra"]),
        _cursor({"a": 1}),
        _cursor(None),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "%%%",
    ):
        resp = await api.get("/transactions", params={"cursor": cursor}, headers=auth)
        assert_problem(resp, 422, "VALIDATION_ERROR")


async def test_no_store_holds_the_card_number_or_cvc_in_a_recomputable_form(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    card = {**CARD, "cvc": "7391"}
    body = {
        "type": "deposit",
        "destination_wallet_id": wallet["id"],
        "amount": "12.34",
        "card": card,
    }
    resp = await api.post(
        "/transactions/create", json=body, headers={**auth, "Idempotency-Key": "card-check"}
    )
    assert resp.status_code == 201, resp.text
    replay = await api.post(
        "/transactions/create", json=body, headers={**auth, "Idempotency-Key": "card-check"}
    )
    assert replay.headers.get("idempotent-replayed") == "true"
    # Every body a guesser might hash: as sent, and as the service's model dumps it.
    full = {**body, "currency": None, "description": None}
    candidates = set()
    for variant in (body, full):
        for text in (
            json.dumps(variant, sort_keys=True),
            json.dumps(variant, sort_keys=True, separators=(",", ":")),
            json.dumps(variant),
        ):
            candidates.add(hashlib.sha256(text.encode()).hexdigest())
    for secret in (card["number"], card["cvc"]):
        candidates.add(hashlib.sha256(secret.encode()).hexdigest())
    # (The CVC's four digits alone would match timestamps by chance: it is looked for as
    # a card field and by its hash.)
    forbidden = [card["number"], '"cvc"', '"7391"', *candidates]

    tables = await db_fetch(
        stack,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('users','wallets','transactions','payment_gateway',"
        "'notifications') AND table_type = 'BASE TABLE'",
    )
    for t in tables:
        rows = await db_fetch(
            stack, f'SELECT t::text AS row FROM "{t["table_schema"]}"."{t["table_name"]}" t'
        )
        for r in rows:
            for needle in forbidden:
                assert needle not in r["row"], (t["table_schema"], t["table_name"], needle)
    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:
        for name in await db.list_collection_names():
            async for doc in db[name].find({}):
                text = json.dumps(doc, default=str)
                for needle in forbidden:
                    assert needle not in text, (name, needle)
    finally:
        await client.close()
    for log in stack.log_dir.glob("*.log"):
        assert card["number"] not in log.read_text()
    # and the events about this deposit, as Kafka holds them
    tx_id = resp.json()["id"]
    for topic in ("payment.processed", "transaction.completed", "wallet.funds_added"):
        events = await kafka_events(
            stack,
            topic,
            None,
            1,
            timeout=30,
            linger=0.5,
            where=lambda e: e["data"].get("transaction_id") == tx_id,
        )
        text = json.dumps(events)
        for needle in forbidden:
            assert needle not in text, (topic, needle)


async def test_a_refused_transfer_stays_refused_when_replayed_after_funding(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    _, auth, src = await funded_user(api, "5.00")
    _, other_auth, dst = await funded_user(api, "0")
    move_body = {
        "transaction_id": str(uuid.uuid4()),
        "source_wallet_id": src["id"],
        "destination_wallet_id": dst["id"],
        "amount_minor": 2000,
        "currency": "USD",
        "kind": "transfer",
    }
    async with internal_client(stack) as wallets:
        first = await wallets.post("/internal/transfers", json=move_body)
        assert_problem(first, 400, "INSUFFICIENT_FUNDS")
        assert (await deposit(api, auth, src["id"], "100.00")).status_code == 201
        again = await asyncio.gather(
            *(wallets.post("/internal/transfers", json=move_body) for _ in range(5))
        )
        for resp in again:
            assert_problem(resp, 400, "INSUFFICIENT_FUNDS")
    assert await balance(api, auth, src["id"]) == "105.00"
    assert await balance(api, other_auth, dst["id"]) == "0.00"


async def test_a_transfer_replayed_concurrently_moves_the_money_once(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    _, auth, src = await funded_user(api, "50.00")
    _, other_auth, dst = await funded_user(api, "0")
    move_body = {
        "transaction_id": str(uuid.uuid4()),
        "source_wallet_id": src["id"],
        "destination_wallet_id": dst["id"],
        "amount_minor": 1500,
        "currency": "USD",
    }
    async with internal_client(stack) as wallets:
        answers = await asyncio.gather(
            *(wallets.post("/internal/transfers", json=move_body) for _ in range(10))
        )
        # later, with the source nearly empty: still the first outcome
        _, _, elsewhere = await funded_user(api, "0")
        drained = await move_out(wallets, src["id"], elsewhere["id"], 3500)
        assert drained.status_code == 200, drained.text
        late = await wallets.post("/internal/transfers", json=move_body)
    assert {a.status_code for a in answers} == {200}
    assert late.status_code == 200
    assert await balance(api, auth, src["id"]) == "0.00"
    assert await balance(api, other_auth, dst["id"]) == "15.00"
    events = await kafka_events(
        stack,
        "wallet.funds_added",
        dst["id"],
        1,
        where=lambda e: e["data"]["transaction_id"] == move_body["transaction_id"],
    )
    assert len(events) == 1
    assert events[0]["data"]["balance"] == "15.00"


async def test_the_wallets_move_refuses_a_bad_body_as_a_problem_and_moves_nothing(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    _, auth, src = await funded_user(api, "50.00")
    _, other_auth, dst = await funded_user(api, "0")
    good = {
        "transaction_id": str(uuid.uuid4()),
        "source_wallet_id": src["id"],
        "destination_wallet_id": dst["id"],
        "amount_minor": 1000,
        "currency": "USD",
    }
    bad_bodies = [
        {**good, "amount_minor": -5},
        {**good, "amount_minor": "ten"},
        {**good, "kind": "gift"},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "currency"},
    ]
    async with internal_client(stack) as wallets:
        for bad in bad_bodies:
            body = assert_problem(
                await wallets.post("/internal/transfers", json=bad), 422, "VALIDATION_ERROR"
            )
            assert body["errors"] and all(e["loc"] for e in body["errors"]), body
        garbage = await wallets.post(
            "/internal/transfers",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert_problem(garbage, 422, "VALIDATION_ERROR")
        stranger = await wallets.post(
            "/internal/transfers", json=good, headers={"X-Internal-Token": "wrong"}
        )
        assert stranger.status_code == 403
    async with httpx.AsyncClient(base_url=stack.url("wallets")) as outsider:
        assert_problem(await outsider.post("/internal/transfers", json=good), 401, "UNAUTHORIZED")
    assert await balance(api, auth, src["id"]) == "50.00"
    assert await balance(api, other_auth, dst["id"]) == "0.00"


async def test_a_malformed_create_is_422_naming_every_fault_and_moves_nothing(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    """The create route reads its own request (kit.plain): a bad header and a bad body
    are both named in one answer, as FastAPI would; a body that is not JSON, or not
    sent as JSON, is refused; none of it creates a transaction or moves money."""
    user, auth, src = await funded_user(api, "10.00")
    _, other_auth, dst = await funded_user(api, "0")
    url = "/transactions/create"
    both = await api.post(
        url,
        json={"type": "transfer", "source_wallet_id": src["id"], "destination_wallet_id": "x"},
        headers={**auth, "Idempotency-Key": "k" * 256},
    )
    locs = [e["loc"] for e in assert_problem(both, 422, "VALIDATION_ERROR")["errors"]]
    assert ["header", "Idempotency-Key"] in locs, locs
    assert ["transfer", "destination_wallet_id"] in locs, locs
    assert ["transfer", "amount"] in locs, locs
    good = {
        "type": "transfer",
        "source_wallet_id": src["id"],
        "destination_wallet_id": dst["id"],
        "amount": "1.00",
    }
    for content, content_type in (
        (json.dumps(good), "text/plain"),
        (json.dumps(good), "application/x-www-form-urlencoded"),
        ("{not json", "application/json"),
        ("", "application/json"),
        ("[]", "application/json"),
        (json.dumps({**good, "type": "gift"}), "application/json"),
    ):
        resp = await api.post(
            url, content=content.encode(), headers={**auth, "Content-Type": content_type}
        )
        assert_problem(resp, 422, "VALIDATION_ERROR")
    ok = await api.post(
        url, content=json.dumps(good), headers={**auth, "Content-Type": "application/merge+json"}
    )
    assert ok.status_code == 201, ok.text
    rows = await db_fetch(
        stack,
        "SELECT count(*) AS n FROM transactions.transactions WHERE initiator_user_id = $1",
        uuid.UUID(user["id"]),
    )
    assert rows[0]["n"] == 2  # the funding deposit, and the one well-formed transfer
    assert await balance(api, auth, src["id"]) == "9.00"
    assert await balance(api, other_auth, dst["id"]) == "1.00"
