"""Registration, login, tokens and sessions, through the gateway against the real stack."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from paysys.kit.crypto import DEV_BLIND_INDEX_KEY, DEV_DATA_KEYS, cipher_from
from paysys.kit.mongo import make_mongo
from paysys.kit.settings import DEV_JWT_SECRET
from tests.conftest import Stack, eventually, stack_cmd, unique_email
from tests.e2e.helpers import (
    PASSWORD,
    assert_problem,
    bearer,
    kafka_event,
    login,
    mails_to,
    register,
)


async def test_register_publishes_event_sends_welcome_email_and_records_notification(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    email = unique_email("welcome")
    resp = await api.post(
        "/users/register",
        json={"email": email, "password": PASSWORD, "full_name": "Grace Hopper"},
        headers={"X-Request-ID": "trace-register-1"},
    )
    assert resp.status_code == 201
    assert resp.headers["x-request-id"] == "trace-register-1"
    user = resp.json()
    assert set(user) == {"id", "email", "full_name", "account_type", "created_at"}
    assert user["account_type"] == "personal"

    event = await kafka_event(stack, "user.registered", user["id"])
    assert event["event_type"] == "user.registered"
    assert event["producer"] == "users"
    assert event["correlation_id"] == "trace-register-1"
    assert event["data"] == {
        "user_id": user["id"],
        "email": email,
        "full_name": "Grace Hopper",
        "account_type": "personal",
    }

    async def welcome() -> list[object]:
        return mails_to(stack.infra.inbox, email)

    [mail] = await eventually(welcome, timeout=60)
    assert "Welcome" in mail["Subject"]  # type: ignore[index]

    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:

        async def notified() -> dict | None:  # type: ignore[type-arg]
            return await db.notifications.find_one({"user_id": user["id"], "kind": "welcome"})

        doc = await eventually(notified, timeout=30)
        assert doc["status"] == "sent"
        assert doc["email"] == email
        assert doc["event_id"] == event["event_id"]

        async def audited() -> dict | None:  # type: ignore[type-arg]
            return await db.audit_log.find_one(
                {"action": "user.registered", "actor_user_id": user["id"]}
            )

        audit = await eventually(audited, timeout=30)
        assert audit["correlation_id"] == "trace-register-1"
    finally:
        await client.close()


async def test_duplicate_email_in_any_letter_case_is_409(api: httpx.AsyncClient) -> None:
    email = unique_email("dup")
    await register(api, email)
    for variant in (email, email.upper(), email.capitalize()):
        resp = await api.post(
            "/users/register",
            json={"email": variant, "password": PASSWORD, "full_name": "Twin"},
        )
        assert_problem(resp, 409, "EMAIL_TAKEN")


async def test_concurrent_registrations_of_one_email_give_exactly_one_201(
    api: httpx.AsyncClient,
) -> None:
    email = unique_email("race")
    body = {"email": email, "password": PASSWORD, "full_name": "Racer"}
    results = await asyncio.gather(*(api.post("/users/register", json=body) for _ in range(8)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 7


async def test_bad_registration_inputs_are_422_problems_and_create_nothing(
    api: httpx.AsyncClient,
) -> None:
    email = unique_email("bad")
    good = {"email": email, "password": PASSWORD, "full_name": "Valid Name"}
    cases = [
        {**good, "email": "not-an-email"},
        {**good, "password": "short"},
        {**good, "password": "x" * 129},
        {**good, "full_name": ""},
        {k: v for k, v in good.items() if k != "password"},
        {**good, "is_admin": True},
        {**good, "password": 12345678},
        {**good, "account_type": "admin"},
        {**good, "full_name": "x" * 1_000_000},
        {**good, "full_name": "nul\x00byte"},  # found by the schemathesis run: was a 500
    ]
    for body in cases:
        resp = await api.post("/users/register", json=body)
        problem = assert_problem(resp, 422, "VALIDATION_ERROR")
        assert problem["errors"] and all({"loc", "msg"} <= set(e) for e in problem["errors"])
        assert PASSWORD not in resp.text
    resp = await api.post(
        "/users/register", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(resp, 422, "VALIDATION_ERROR")
    resp = await api.post("/users/register", content=b"x" * (2 * 1024 * 1024))
    assert_problem(resp, 413, "PAYLOAD_TOO_LARGE")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: a chunked body
        for _ in range(40):
            yield b"x" * 65536

    resp = await api.post(
        "/users/register", content=chunked(), headers={"content-type": "application/json"}
    )
    assert_problem(resp, 413, "PAYLOAD_TOO_LARGE")

    async def small_chunks() -> AsyncIterator[bytes]:
        raw = json.dumps({**good, "email": unique_email("chunked")}).encode()
        for i in range(0, len(raw), 16):
            yield raw[i : i + 16]

    resp = await api.post(
        "/users/register", content=small_chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 201, resp.text  # a chunked body within the limit is fine
    # none of them created the account
    login_resp = await api.post("/users/login", json={"email": email, "password": PASSWORD})
    assert login_resp.status_code == 401


async def test_login_issues_tokens_with_the_contract_claims(api: httpx.AsyncClient) -> None:
    user = await register(api)
    tokens = await login(api, user["email"].upper())
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] > 0
    assert tokens["user"] == user
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert {"sub", "sid", "exp", "iat", "jti", "iss", "aud"} <= set(claims)
    assert claims["sub"] == user["id"]
    me = await api.get("/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json() == user


async def test_wrong_password_and_unknown_email_get_the_same_401(api: httpx.AsyncClient) -> None:
    user = await register(api)
    wrong = await api.post("/users/login", json={"email": user["email"], "password": "nope-nope"})
    unknown = await api.post(
        "/users/login", json={"email": unique_email("ghost"), "password": "nope-nope"}
    )
    a = assert_problem(wrong, 401, "INVALID_CREDENTIALS")
    b = assert_problem(unknown, 401, "INVALID_CREDENTIALS")
    assert a == b


async def test_logins_and_logout_are_audited_with_the_client_ip(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user = await register(api)
    index = cipher_from(DEV_DATA_KEYS, "dev1", DEV_BLIND_INDEX_KEY).blind_index(user["email"])
    await api.post("/users/login", json={"email": user["email"], "password": "wrong-password"})
    tokens = await login(api, user["email"])
    await api.post("/users/logout", headers=bearer(tokens["access_token"]))
    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:

        async def found(query: dict) -> dict | None:  # type: ignore[type-arg]
            return await db.audit_log.find_one(query)

        failed = await eventually(
            # the address tried, by its blind index (the audit log keeps no email)
            lambda: found({"action": "user.login_failed", "details.email_index": index}),
            timeout=30,
        )
        assert failed["ip"] == "127.0.0.1"
        for action in ("user.login_succeeded", "user.logout"):
            doc = await eventually(
                lambda a=action: found({"action": a, "actor_user_id": user["id"]}), timeout=30
            )
            assert doc["ip"] == "127.0.0.1"
            assert doc["correlation_id"]
    finally:
        await client.close()


def _b64(obj: dict) -> str:  # type: ignore[type-arg]
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def test_tampered_expired_none_and_wrong_audience_tokens_are_401(
    api: httpx.AsyncClient,
) -> None:
    user = await register(api)
    tokens = await login(api, user["email"])
    good = tokens["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    header, _payload, sig = good.split(".")
    other = {**claims, "sub": str(uuid.uuid4())}
    now = int(time.time())
    bad_tokens = {
        "tampered": f"{header}.{_b64(other)}.{sig}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "expired": jwt.encode({**claims, "exp": now - 10, "iat": now - 100}, DEV_JWT_SECRET),
        "wrong audience": jwt.encode({**claims, "aud": "someone-else"}, DEV_JWT_SECRET),
        "wrong key": jwt.encode(claims, "another-secret-another-secret-another"),
        "garbage": "not.a.jwt",
    }
    for name, token in bad_tokens.items():
        resp = await api.get("/users/me", headers=bearer(token))
        assert resp.status_code == 401, name
        assert resp.json()["code"] == "UNAUTHORIZED", name
    assert (await api.get("/users/me")).status_code == 401
    assert (await api.get("/users/me", headers=bearer(good))).status_code == 200


async def test_logout_refuses_the_old_access_token_at_once(api: httpx.AsyncClient) -> None:
    user = await register(api)
    tokens = await login(api, user["email"])
    assert (
        await api.post("/users/logout", headers=bearer(tokens["access_token"]))
    ).status_code == 204
    resp = await api.get("/users/me", headers=bearer(tokens["access_token"]))
    assert_problem(resp, 401, "UNAUTHORIZED")
    resp = await api.post("/users/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status_code == 401


async def test_refresh_rotates_and_reuse_of_a_spent_token_revokes_the_session(
    api: httpx.AsyncClient,
) -> None:
    user = await register(api)
    first = await login(api, user["email"])
    resp = await api.post("/users/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 200
    second = resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await api.get("/users/me", headers=bearer(second["access_token"]))).status_code == 200
    # replaying the spent token: refused, and the whole session dies
    replay = await api.post("/users/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(replay, 401, "UNAUTHORIZED")
    assert (await api.get("/users/me", headers=bearer(second["access_token"]))).status_code == 401
    again = await api.post("/users/refresh", json={"refresh_token": second["refresh_token"]})
    assert again.status_code == 401


async def test_internal_and_unknown_paths_are_not_routable(api: httpx.AsyncClient) -> None:
    user = await register(api)
    tokens = await login(api, user["email"])
    wid = str(uuid.uuid4())
    for method, path in [
        ("POST", f"/wallets/{wid}/add-funds"),
        ("POST", f"/wallets/{wid}/deduct-funds"),
        ("GET", f"/internal/users/{user['id']}"),
        ("GET", "/no/such/path"),
    ]:
        resp = await api.request(
            method,
            path,
            json={"amount": "1.00", "transaction_id": wid},
            headers=bearer(tokens["access_token"]),
        )
        assert_problem(resp, 404, "NOT_FOUND")


async def test_client_cannot_forge_the_user_id_header(api: httpx.AsyncClient) -> None:
    victim = await register(api)
    attacker = await register(api)
    tokens = await login(api, attacker["email"])
    resp = await api.get(
        "/users/me",
        headers={
            **bearer(tokens["access_token"]),
            "X-User-Id": victim["id"],
            "X-Internal-Token": "guess",
        },
    )
    assert resp.json()["id"] == attacker["id"]
    resp = await api.get("/users/me", headers={"X-User-Id": victim["id"]})
    assert resp.status_code == 401


async def test_a_forged_user_id_never_reaches_the_gateways_log(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # Finding 19.9: the log binding took X-User-Id before any credential check.
    attacker = await register(api)
    tokens = await login(api, attacker["email"])
    forged = str(uuid.uuid4())
    for headers in ({}, bearer(tokens["access_token"]), {"Authorization": "Bearer nonsense"}):
        rid = f"forge-{uuid.uuid4().hex}"
        resp = await api.get(
            "/users/me", headers={**headers, "X-User-Id": forged, "X-Request-ID": rid}
        )
        assert resp.status_code in (200, 401)

        async def logged(rid: str = rid) -> list[dict[str, Any]]:
            text = (stack.log_dir / "gateway.log").read_text(errors="replace")
            return [json.loads(line) for line in text.splitlines() if rid in line]

        lines = await eventually(logged, timeout=10)
        assert all(line.get("user_id") in (None, attacker["id"]) for line in lines), lines
    assert forged not in (stack.log_dir / "gateway.log").read_text(errors="replace")
    assert forged not in (stack.log_dir / "users.log").read_text(errors="replace")


async def test_gateway_serves_one_openapi_document_for_the_public_api(
    api: httpx.AsyncClient,
) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert "/users/register" in doc["paths"]
    assert "/users/login" in doc["paths"]
    assert not any("add-funds" in p or "internal" in p for p in doc["paths"])
    operations = [(m, p) for p, ops in doc["paths"].items() for m in ops]
    assert len(operations) == 28  # every public route of the gateway, nothing else
    assert (await api.get("/docs")).status_code == 200


@pytest.mark.disruptive
async def test_audit_records_wait_out_a_mongodb_outage_and_are_written_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user = await register(api)
    stack_cmd("down", "mongodb")
    try:
        tokens = await login(api, user["email"])  # login does not need MongoDB
        await api.post("/users/logout", headers=bearer(tokens["access_token"]))
    finally:
        stack_cmd("up", "mongodb")
    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:

        async def both() -> bool:
            n = await db.audit_log.count_documents(
                {
                    "actor_user_id": user["id"],
                    "action": {"$in": ["user.login_succeeded", "user.logout"]},
                }
            )
            return n == 2

        await eventually(both, timeout=60, interval=1)
        await asyncio.sleep(2)
        assert await both()  # still exactly one of each
    finally:
        await client.close()
