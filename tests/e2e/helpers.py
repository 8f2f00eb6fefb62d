"""Helpers shared by the end-to-end tests: users, tokens, problems, Kafka, mail."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from email import message_from_bytes
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from paysys_dev import inbox as inbox_messages
from tests.conftest import Stack, unique_email

PASSWORD = "correct horse battery"


async def register(api: httpx.AsyncClient, email: str | None = None, **extra: str) -> dict:  # type: ignore[type-arg]
    body = {"email": email or unique_email(), "password": PASSWORD, "full_name": "Ada Lovelace"}
    body.update(extra)
    resp = await api.post("/users/register", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def login(api: httpx.AsyncClient, email: str) -> dict:  # type: ignore[type-arg]
    resp = await api.post("/users/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict:  # type: ignore[type-arg]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["code"] == code
    assert {"type", "title", "status", "detail"} <= set(body)
    assert "Traceback" not in resp.text
    return body  # type: ignore[no-any-return]


# Mail that Mailpit kept from before this session (less a margin) is never a test's.
_SESSION_START = time.time() - 300


def mail_raw(inbox: str, address: str) -> list[bytes]:
    """The raw text of this session's messages to `address`, oldest first."""
    return inbox_messages.to(inbox, address, since=_SESSION_START)


def mails_to(inbox: str, address: str) -> list[object]:
    return [message_from_bytes(raw) for raw in mail_raw(inbox, address)]


async def kafka_event(stack: Stack, topic: str, key: str, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    """The first event on `topic` with `key`."""
    found = await kafka_events(stack, topic, key, 1, timeout=timeout, linger=0)
    if not found:
        raise AssertionError(f"no {topic} event with key {key}")
    return found[0]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def user_with_token(
    api: httpx.AsyncClient, account_type: str = "personal"
) -> tuple[dict, dict[str, str]]:  # type: ignore[type-arg]
    user = await register(api, account_type=account_type)
    tokens = await login(api, user["email"])
    return user, bearer(tokens["access_token"])


async def kafka_events(
    stack: Stack,
    topic: str,
    key: str | None,
    want: int,
    timeout: float = 60,
    linger: float = 2.0,
    where: Any = None,
) -> list[dict]:  # type: ignore[type-arg]
    """Every event on `topic` with `key` (and matching `where`). It takes the topic's end
    offsets first and reads every partition until it has passed them, so "no such
    event" means none was there, never a quiet spell taken for the end; then it waits
    for at least `want`, and lingers so that a late extra (duplicate) one is seen too."""
    partitions = await _partitions(stack, topic, timeout if want else 0)
    found: list[dict] = []  # type: ignore[type-arg]
    if not partitions:
        return found  # the topic does not exist: nothing was ever published to it
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.infra.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        quiet_until = None

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while True:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for r in records:
                    if key is not None and r.key != key.encode():
                        continue
                    value = json.loads(r.value)
                    if where is None or where(value):
                        found.append(value)
            if await behind():
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic} could not be read to its end in {timeout} s")
                continue
            if len(found) >= want:
                quiet_until = quiet_until or time.monotonic() + linger
                if time.monotonic() > quiet_until:
                    break
            elif time.monotonic() > deadline:
                break
    finally:
        await consumer.stop()
    return found


async def _partitions(stack: Stack, topic: str, wait: float) -> list[TopicPartition]:
    """The topic's partitions; waits up to `wait` seconds for it to exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.infra.kafka)
    await admin.start()
    try:
        deadline = time.monotonic() + wait
        while True:
            [described] = await admin.describe_topics([topic])
            parts = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
            if parts or time.monotonic() > deadline:
                return parts
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


def internal_client(stack: Stack, service: str = "wallets") -> httpx.AsyncClient:
    from paysys.kit.settings import DEV_INTERNAL_TOKEN

    return httpx.AsyncClient(
        base_url=stack.url(service), headers={"X-Internal-Token": DEV_INTERNAL_TOKEN}, timeout=60
    )


async def move_out(
    wallets: httpx.AsyncClient,
    source: str,
    destination: str,
    amount_minor: int,
    transaction_id: str | None = None,
    currency: str = "USD",
) -> httpx.Response:
    """A transfer's whole move, straight to wallets (POST /internal/transfers): how money
    leaves a wallet, the only way."""
    body = {
        "transaction_id": transaction_id or str(uuid.uuid4()),
        "source_wallet_id": source,
        "destination_wallet_id": destination,
        "amount_minor": amount_minor,
        "currency": currency,
    }
    return await wallets.post("/internal/transfers", json=body)
