"""What an outsider can send the gateway: hostile request ids, doubly encoded paths,
tokens whose session belongs to someone else, direct calls to the internal services."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import timedelta

import httpx

from paysys.kit.auth import issue_access_token
from paysys.kit.settings import DEV_JWT_SECRET
from tests.conftest import TEST_PORTS, Stack, eventually, unique_email
from tests.e2e.helpers import PASSWORD, assert_problem, login, mails_to, register, user_with_token

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def raw_request(port: int, head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a plain socket, with header bytes exactly as given
    (httpx would refuse to send some of them)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Head and body in one write: a server that answers (and closes) before the body
    # arrives has unread bytes on close, and the kernel then resets the connection,
    # which can drop the answer before it is read.
    writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head_raw, _, payload = data.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, payload


async def test_a_request_id_with_unsafe_bytes_is_replaced_and_email_keeps_flowing(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    poisoned = unique_email("poison")
    body = json.dumps({"email": poisoned, "password": PASSWORD, "full_name": "P"}).encode()
    status, headers, _ = await raw_request(
        TEST_PORTS["gateway"],
        b"POST /users/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: a\x85b\r\n",
        body,
    )
    assert status == 201
    assert UUID_RE.fullmatch(headers["x-request-id"])  # a fresh id, not the client's
    after = await register(api, unique_email("after-poison"))

    async def both_welcomed() -> bool:
        return bool(
            mails_to(stack.infra.inbox, poisoned) and mails_to(stack.infra.inbox, after["email"])
        )

    await eventually(both_welcomed, timeout=60)


async def test_a_safe_request_id_is_kept_and_a_long_one_is_replaced(
    api: httpx.AsyncClient,
) -> None:
    ok = await api.get("/users/me", headers={"X-Request-ID": "client-1:abc.DEF_9"})
    assert ok.headers["x-request-id"] == "client-1:abc.DEF_9"
    for bad in ("x" * 129, "has space", "semi;colon", "ünicode"):
        resp = await api.get("/users/me", headers={"X-Request-ID": bad.encode()})
        assert UUID_RE.fullmatch(resp.headers["x-request-id"]), bad


async def test_encoded_slashes_and_dot_segments_never_reach_an_internal_route(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth = await user_with_token(api)
    wallet = (await api.post("/wallets/create", json={}, headers=auth)).json()
    wid = wallet["id"]
    for path in (
        f"/wallets/{wid}%252Fadd-funds",
        f"/wallets/{wid}%2Fadd-funds",
        f"/wallets/{wid}%252F..%252Fx",
        "/wallets/%2e%2e",
        "/wallets/..%2Finternal%2Fwallets",
        f"/transactions/{wid}%252F..",
        f"/wallets/{wid}%2fadd-funds",
        f"/wallets/{wid}%5cadd-funds",
        f"/wallets/{wid}/add-funds;.json",
        f"//wallets/{wid}/add-funds",
        f"/wallets//{wid}/add-funds",
        "/%69nternal/wallets",
    ):
        resp = await api.get(path, headers=auth)
        assert resp.status_code == 404, (path, resp.status_code, resp.text)
        assert resp.json()["code"] in ("NOT_FOUND", "WALLET_NOT_FOUND", "TRANSACTION_NOT_FOUND")
    # and through a raw socket, where no client library normalises anything
    for target in (
        f"/wallets/{wid}%252Fadd-funds",
        f"/wallets/{wid}/./add-funds",
        f"/wallets/{wid}/x/../add-funds",
        f"/wallets/{wid}%2F%2E%2E%2F{wid}/add-funds",
        f"/wallets/{wid}/add-funds%00",
        f"/wallets/{wid}/ADD-FUNDS",
        f"http://127.0.0.1:{TEST_PORTS['wallets']}/wallets/{wid}/add-funds",
    ):
        status, _, _ = await raw_request(
            TEST_PORTS["gateway"],
            f"POST {target} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {auth['Authorization']}\r\n"
            "Content-Type: application/json\r\n".encode(),
            json.dumps({"amount": "5.00", "transaction_id": str(uuid.uuid4())}).encode(),
        )
        assert status in (400, 404, 405), (target, status)
    assert (await api.get(f"/wallets/{wid}", headers=auth)).json()["balance"] == "0.00"


async def test_a_token_naming_another_users_session_is_401(api: httpx.AsyncClient) -> None:
    victim, _ = await user_with_token(api)
    attacker = await register(api)
    attacker_tokens = await login(api, attacker["email"])
    attacker_sid = attacker_tokens["refresh_token"].split(".")[0]
    # A token for the victim on the attacker's live session: what a leaked signing key
    # or a confused issuer would produce. The session is alive, but not the victim's.
    forged, _ = issue_access_token(
        secret=DEV_JWT_SECRET,
        issuer="paysys-users",
        audience="paysys-api",
        user_id=victim["id"],
        session_id=attacker_sid,
        ttl=timedelta(minutes=5),
    )
    resp = await api.get("/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert_problem(resp, 401, "UNAUTHORIZED")


async def test_register_login_and_refresh_refuse_callers_without_the_internal_credential(
    stack: Stack,
) -> None:
    email = unique_email("direct")
    async with httpx.AsyncClient(base_url=stack.url("users"), timeout=30) as direct:
        spoof = {"X-Forwarded-For": "203.0.113.9"}
        for path, body in (
            ("/users/register", {"email": email, "password": PASSWORD, "full_name": "D"}),
            ("/users/login", {"email": email, "password": PASSWORD}),
            ("/users/refresh", {"refresh_token": f"{uuid.uuid4()}.x"}),
        ):
            resp = await direct.post(path, json=body, headers=spoof)
            assert_problem(resp, 401, "UNAUTHORIZED")
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as api:
        # nothing was created: the address is still free
        await register(api, email)
