"""Webhooks (issue 23), through the gateway, with a real HTTP receiver run by the test:
endpoints per user, every subscribed event that concerns the user POSTed and signed,
retries with the same event id, a deliveries log, a manual retry; a slow or huge
receiver holds up nobody else."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import httpx

from paysys.kit.events import TOPICS
from tests.conftest import Stack, eventually
from tests.e2e.helpers import assert_problem, mails_to, user_with_token
from tests.e2e.money import deposit, funded_user, move, wallet_for
from tests.e2e.receiver import Received, Receiver

Auth = dict[str, str]


async def endpoint(api: httpx.AsyncClient, auth: Auth, url: str, **body: Any) -> dict[str, Any]:
    resp = await api.post("/webhooks", json={"url": url, **body}, headers=auth)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def verify(secret: str, r: Received) -> None:
    """What a receiver does (the API guide shows it): recompute the HMAC of "<t>.<body>"
    and compare in constant time; refuse an old `t`."""
    parts = dict(p.split("=", 1) for p in r.headers["Paysys-Signature"].split(","))
    t = int(parts["t"])
    assert abs(time.time() - t) < 300
    mac = hmac.new(secret.encode(), f"{t}.".encode() + r.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, parts["v1"])


async def test_endpoints_are_created_listed_read_and_deleted_by_their_owner(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    _, auth = await user_with_token(api)
    _, other = await user_with_token(api)
    created = await endpoint(api, auth, receiver.base + "/a")
    assert created["secret"].startswith("whsec_") and len(created["secret"]) >= 6 + 43
    assert (created["status"], sorted(created["events"])) == ("enabled", sorted(TOPICS))
    chosen = await endpoint(api, auth, receiver.base + "/b", events=["transaction.completed"])
    assert chosen["events"] == ["transaction.completed"]
    listed = (await api.get("/webhooks", headers=auth)).json()["items"]
    assert [e["id"] for e in listed] == [created["id"], chosen["id"]]
    assert all("secret" not in e for e in listed)
    one = await api.get(f"/webhooks/{created['id']}", headers=auth)
    assert one.status_code == 200 and "secret" not in one.json()
    for path in (f"/webhooks/{created['id']}", f"/webhooks/{created['id']}/deliveries"):
        assert_problem(await api.get(path, headers=other), 404, "WEBHOOK_NOT_FOUND")
    assert_problem(
        await api.delete(f"/webhooks/{created['id']}", headers=other), 404, "WEBHOOK_NOT_FOUND"
    )
    assert (await api.delete(f"/webhooks/{created['id']}", headers=auth)).status_code == 204
    assert_problem(
        await api.get(f"/webhooks/{created['id']}", headers=auth), 404, "WEBHOOK_NOT_FOUND"
    )
    for bad in (
        {"url": receiver.base, "events": ["wallet.exploded"]},
        {"url": receiver.base, "events": []},
        {"url": 5},
        {"url": receiver.base, "extra": 1},
    ):
        assert_problem(await api.post("/webhooks", json=bad, headers=auth), 422, "VALIDATION_ERROR")
    for url in (
        "ftp://127.0.0.1/x",
        "https://user:pw@example.com/x",
        "not a url",
        "http://[::1",  # not even parseable
        "https://example.com:99999/x",
    ):
        resp = await api.post("/webhooks", json={"url": url}, headers=auth)
        assert_problem(resp, 422, "URL_NOT_ALLOWED")
    for i in range(9):  # 1 left + 9 = 10
        await endpoint(api, auth, f"{receiver.base}/n{i}")
    resp = await api.post("/webhooks", json={"url": receiver.base}, headers=auth)
    assert_problem(resp, 422, "TOO_MANY_WEBHOOKS")
    assert (await api.get("/webhooks")).status_code == 401


async def test_every_event_of_the_users_money_arrives_signed_as_it_was_on_kafka(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    _, auth = await user_with_token(api)
    hook = await endpoint(api, auth, receiver.base + "/mine")
    _, friend_auth, friend = await funded_user(api, "0")
    friend_hook = await endpoint(
        api, friend_auth, receiver.base + "/friend", events=["transaction.completed"]
    )
    wallet = await wallet_for(api, auth)
    dep = await deposit(api, auth, wallet["id"], "30.00")
    assert dep.status_code == 201, dep.text
    sent = await move(api, auth, "transfer", wallet["id"], friend["id"], "12.00")
    assert sent.status_code == 201, sent.text

    want = {
        "wallet.created",
        "payment.processed",  # the card processor's: routed to the deposit's owner
        "wallet.funds_added",
        "wallet.funds_deducted",
        "transaction.completed",
    }

    async def all_arrived() -> bool:
        return want <= {r.event["event_type"] for r in receiver.at("/mine")}

    await eventually(all_arrived, timeout=30)
    for r in receiver.at("/mine"):
        verify(hook["secret"], r)
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["Paysys-Event-Id"] == r.event["event_id"]
    mine = {r.event["event_type"]: r.event for r in receiver.at("/mine")}
    assert mine["payment.processed"]["data"]["transaction_id"] == dep.json()["id"]
    # Both parties of a transaction; the friend only what they subscribed to.
    await eventually(lambda: _arrived(receiver, "/friend", 1), timeout=30)
    (theirs,) = receiver.at("/friend")
    verify(friend_hook["secret"], theirs)
    assert theirs.event["event_type"] == "transaction.completed"
    assert theirs.event["data"]["transaction_id"] == sent.json()["id"]

    # The receiver has each event before its sender records the answer: the log follows.
    async def logged() -> list[dict] | None:  # type: ignore[type-arg]
        resp = await api.get(f"/webhooks/{hook['id']}/deliveries", headers=auth)
        log = resp.json()["items"]
        done = all(d["status"] != "pending" for d in log)
        return log if done and {d["event_type"] for d in log} >= want else None

    log = await eventually(logged, timeout=30)
    assert all(d["status"] == "succeeded" and d["last_status_code"] == 200 for d in log)


async def _arrived(receiver: Receiver, path: str, n: int) -> bool:
    return len(receiver.at(path)) >= n


async def test_a_failing_receiver_gets_the_same_event_again_and_the_log_shows_it(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    _, auth = await user_with_token(api)
    hook = await endpoint(api, auth, receiver.base + "/fail-2", events=["wallet.created"])
    await wallet_for(api, auth)
    await eventually(lambda: _arrived(receiver, "/fail-2", 3), timeout=30)
    ids = {r.headers["Paysys-Event-Id"] for r in receiver.at("/fail-2")}
    assert len(ids) == 1  # the same event, three times: 500, 500, 200
    path = f"/webhooks/{hook['id']}/deliveries"

    async def succeeded() -> dict[str, Any] | None:
        items = (await api.get(path, headers=auth)).json()["items"]
        return items[0] if items and items[0]["status"] == "succeeded" else None

    d = await eventually(succeeded, timeout=20)
    assert (d["attempts"], d["last_status_code"], d["event_id"]) == (3, 200, ids.pop())
    # A manual retry sends it once more, whatever its status.
    resp = await api.post(f"{path}/{d['id']}/retry", headers=auth)
    assert resp.status_code == 202, resp.text
    await eventually(lambda: _arrived(receiver, "/fail-2", 4), timeout=20)
    missing = await api.post(f"{path}/{hook['id']}/retry", headers=auth)
    assert_problem(missing, 404, "DELIVERY_NOT_FOUND")


async def test_a_deleted_endpoint_gets_nothing_more(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    _, auth, wallet = await funded_user(api, "20.00")
    gone = await endpoint(api, auth, receiver.base + "/gone", events=["transaction.completed"])
    kept = await endpoint(api, auth, receiver.base + "/kept", events=["transaction.completed"])
    assert (await api.delete(f"/webhooks/{gone['id']}", headers=auth)).status_code == 204
    _, _, friend = await funded_user(api, "0")
    assert (
        await move(api, auth, "transfer", wallet["id"], friend["id"], "1.00")
    ).status_code == 201
    await eventually(lambda: _arrived(receiver, "/kept", 1), timeout=30)
    await asyncio.sleep(1)
    assert receiver.at("/gone") == []
    assert kept["id"] != gone["id"]


async def test_a_receiver_that_never_answers_or_answers_a_gigabyte_holds_up_nobody(
    api: httpx.AsyncClient, stack: Stack, receiver: Receiver
) -> None:
    # Everything ready first, so that the one delivery measured is quick to make.
    user, auth, wallet = await funded_user(api, "5.00")
    await endpoint(api, auth, receiver.base + "/quick", events=["transaction.completed"])
    _, _, friend = await funded_user(api, "0")
    slow_user, slow_auth = await user_with_token(api)
    slow = await endpoint(api, slow_auth, receiver.base + "/slow", events=["wallet.created"])
    _, huge_auth = await user_with_token(api)
    huge = await endpoint(api, huge_auth, receiver.base + "/huge", events=["wallet.created"])
    await wallet_for(api, slow_auth)
    await wallet_for(api, huge_auth)
    await eventually(lambda: _arrived(receiver, "/slow", 1), timeout=30)  # now hanging
    assert (
        await move(api, auth, "transfer", wallet["id"], friend["id"], "1.00")
    ).status_code == 201
    await eventually(lambda: _arrived(receiver, "/quick", 1), timeout=30)
    # ... while the hanging delivery was still waiting for its answer: not tried out yet.
    (hanging,) = (await api.get(f"/webhooks/{slow['id']}/deliveries", headers=slow_auth)).json()[
        "items"
    ]
    assert (hanging["status"], hanging["attempts"], hanging["last_error"]) == ("pending", 1, None)
    # The gigabyte: its status is all that is read; the delivery is done.
    log = f"/webhooks/{huge['id']}/deliveries"

    async def huge_done() -> bool:
        items = (await api.get(log, headers=huge_auth)).json()["items"]
        return bool(items) and items[0]["status"] == "succeeded"

    await eventually(huge_done, timeout=30)
    # Email is not held up either.
    await eventually(lambda: _mailed(stack, user["email"]), timeout=30)
    assert slow_user["email"]


async def _mailed(stack: Stack, address: str) -> bool:
    return len(mails_to(stack.infra.inbox, address)) >= 2  # welcome, transfer sent


async def test_a_sender_killed_mid_delivery_still_delivers_the_event(
    api: httpx.AsyncClient, stack: Stack, receiver: Receiver
) -> None:
    _, auth = await user_with_token(api)
    hook = await endpoint(api, auth, receiver.base + "/hang-once", events=["wallet.created"])
    await wallet_for(api, auth)
    await eventually(lambda: _arrived(receiver, "/hang-once", 1), timeout=30)
    stack.kill("notifications")  # SIGKILL while the POST waits for its answer
    stack.start("notifications")
    await eventually(lambda: _arrived(receiver, "/hang-once", 2), timeout=40)
    first, again = receiver.at("/hang-once")[:2]
    assert first.headers["Paysys-Event-Id"] == again.headers["Paysys-Event-Id"]
    verify(hook["secret"], again)

    async def succeeded() -> bool:
        path = f"/webhooks/{hook['id']}/deliveries"
        items = (await api.get(path, headers=auth)).json()["items"]
        return bool(items) and items[0]["status"] == "succeeded"

    await eventually(succeeded, timeout=20)


async def test_a_retry_of_a_delivery_in_flight_goes_at_once_and_is_not_undone(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    # The first attempt hangs (the sender waits 10 s for it); the user retries meanwhile.
    _, auth = await user_with_token(api)
    path = "/hang-once-then-retried"
    hook = await endpoint(api, auth, receiver.base + path, events=["wallet.created"])
    await wallet_for(api, auth)
    await eventually(lambda: _arrived(receiver, path, 1), timeout=30)
    deliveries = f"/webhooks/{hook['id']}/deliveries"
    [held] = (await api.get(deliveries, headers=auth)).json()["items"]
    retried = await api.post(f"{deliveries}/{held['id']}/retry", headers=auth)
    assert retried.status_code == 202, retried.text
    await eventually(lambda: _arrived(receiver, path, 2), timeout=30)
    first, again = receiver.at(path)[:2]
    assert again.at - first.at < 8  # sent while the first attempt still hung
    assert again.headers["Paysys-Event-Id"] == first.headers["Paysys-Event-Id"]
    # Once the hung attempt has timed out, its outcome has not undone the success.
    await asyncio.sleep(max(0.0, first.at + 12 - time.monotonic()))
    [after] = (await api.get(deliveries, headers=auth)).json()["items"]
    assert (after["status"], after["last_status_code"]) == ("succeeded", 200), after
