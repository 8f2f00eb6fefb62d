"""Text that is not text, and addresses spelled another way (findings 19.5 and 19.7):
a lone UTF-16 surrogate in any string field of the public API is a 422 that changes
nothing (it was a 500 in encryption, argon2 or asyncpg, or a 503 that paged on-call),
and an address logs in under every spelling that registration accepted as the same."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import httpx
import pytest

from tests.conftest import unique_email
from tests.e2e.helpers import PASSWORD, assert_problem, bearer, login, register, user_with_token
from tests.e2e.money import CARD, balance, funded_user

SURROGATE = "\ud800"


def raw_json(body: dict[str, Any]) -> bytes:
    # json.dumps escapes the lone surrogate as \ud800, exactly what a hostile client sends
    return json.dumps(body).encode()


async def post_raw(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await api.post(
        path,
        content=raw_json(body),
        headers={"content-type": "application/json", **(headers or {})},
    )


@pytest.mark.parametrize("field", ["email", "password", "full_name"])
async def test_a_lone_surrogate_in_registration_is_422_and_creates_no_account(
    api: httpx.AsyncClient, field: str
) -> None:
    email = unique_email("sur")
    good = {"email": email, "password": PASSWORD, "full_name": "Valid Name"}
    bad = {**good, field: good[field] + SURROGATE}
    assert_problem(await post_raw(api, "/users/register", bad), 422, "VALIDATION_ERROR")
    resp = await api.post("/users/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 401


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/users/login", {"email": "a" + SURROGATE + "@example.com", "password": PASSWORD}),
        ("/users/login", {"email": "a@example.com", "password": "pw" + SURROGATE}),
        ("/users/refresh", {"refresh_token": "t" + SURROGATE}),
    ],
)
async def test_a_lone_surrogate_in_login_or_refresh_is_422(
    api: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    assert_problem(await post_raw(api, path, body), 422, "VALIDATION_ERROR")


async def test_a_lone_surrogate_in_a_wallet_is_422(api: httpx.AsyncClient) -> None:
    _, auth = await user_with_token(api)
    resp = await post_raw(api, "/wallets/create", {"currency": "US" + SURROGATE}, auth)
    assert_problem(resp, 422, "VALIDATION_ERROR")
    assert (await api.get("/wallets", headers=auth)).json()["items"] == []


async def test_a_lone_surrogate_in_any_transaction_field_is_422_and_records_nothing(
    api: httpx.AsyncClient,
) -> None:
    _, auth, src = await funded_user(api, "20.00")
    _, other, dst = await funded_user(api, "0")
    before = (await api.get("/transactions", headers=auth)).json()["items"]
    moves = {"source_wallet_id": src["id"], "destination_wallet_id": dst["id"], "amount": "1.00"}
    deposit = {"type": "deposit", "destination_wallet_id": src["id"], "amount": "1.00"}
    cases = [
        {"type": "transfer", **moves, "description": "rent " + SURROGATE},
        {"type": "payment", **moves, "description": SURROGATE},
        {"type": "transfer", **moves, "amount": "1.0" + SURROGATE},
        {"type": "transfer", **moves, "currency": "US" + SURROGATE},
        {"type": "transfer", **moves, "source_wallet_id": src["id"][:-1] + SURROGATE},
        {**deposit, "description": "top-up" + SURROGATE, "card": CARD},
        {**deposit, "card": {**CARD, "number": "424242424242424" + SURROGATE}},
        {**deposit, "card": {**CARD, "cvc": "12" + SURROGATE}},
        {"type": "transfer" + SURROGATE, **moves},
    ]
    for i, body in enumerate(cases):
        key = {"Idempotency-Key": f"sur-{i}-{src['id']}"}
        resp = await post_raw(api, "/transactions/create", body, {**auth, **key})
        assert_problem(resp, 422, "VALIDATION_ERROR")
    assert (await api.get("/transactions", headers=auth)).json()["items"] == before
    assert await balance(api, auth, src["id"]) == "20.00"
    assert await balance(api, other, dst["id"]) == "0.00"


@pytest.mark.parametrize(
    ("registered", "typed"),
    [
        ("x-{n}@xn--bcher-kva.example", "x-{n}@xn--bcher-kva.example"),  # IDNA as typed
        ("x-{n}@bücher.example", "x-{n}@xn--bcher-kva.example"),
        ("josé-{n}@example.com", None),  # the same address, decomposed (NFD) at login
    ],
)
async def test_an_address_logs_in_under_every_spelling_registration_took_as_the_same(
    api: httpx.AsyncClient, registered: str, typed: str | None
) -> None:
    n = unique_email("n").split("@")[0]
    email = registered.format(n=n)
    await register(api, email)
    spelled = typed.format(n=n) if typed else unicodedata.normalize("NFD", email)
    assert spelled != unicodedata.normalize("NFC", spelled) or typed
    tokens = await login(api, spelled)
    me = await api.get("/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
