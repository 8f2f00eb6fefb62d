"""One request id, traceable from the gateway's log line to the services' log lines,
the Kafka events and the MongoDB records of that request."""

from __future__ import annotations

import json
import uuid

import httpx

from paysys.kit.mongo import make_mongo
from tests.conftest import Stack, eventually
from tests.e2e.helpers import kafka_events
from tests.e2e.money import funded_user, move


def log_lines(stack: Stack, service: str, request_id: str) -> list[dict]:  # type: ignore[type-arg]
    lines = []
    for raw in (stack.log_dir / f"{service}.log").read_text().splitlines():
        if request_id in raw:
            lines.append(json.loads(raw))  # every line is one JSON object
    return lines


async def test_a_transfers_request_id_reaches_logs_events_and_mongo(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user, auth, src = await funded_user(api, "10.00")
    _, _, dst = await funded_user(api, "0")
    rid = f"trace-{uuid.uuid4()}"
    resp = await move(api, {**auth, "X-Request-ID": rid}, "transfer", src["id"], dst["id"], "1.00")
    assert resp.status_code == 201
    assert resp.headers["x-request-id"] == rid
    tx_id = resp.json()["id"]

    [gateway_line] = [ln for ln in log_lines(stack, "gateway", rid) if ln["event"] == "request"]
    assert {"timestamp", "level", "service", "request_id", "user_id", "event"} <= set(gateway_line)
    assert gateway_line["service"] == "gateway"
    assert gateway_line["user_id"] == user["id"]
    assert gateway_line["path"] == "/transactions/create"
    assert log_lines(stack, "transactions", rid)
    assert log_lines(stack, "wallets", rid)

    [debit] = await kafka_events(
        stack,
        "wallet.funds_deducted",
        src["id"],
        1,
        where=lambda e: e["data"]["transaction_id"] == tx_id,
    )
    assert debit["correlation_id"] == rid
    [done] = await kafka_events(stack, "transaction.completed", tx_id, 1)
    assert done["correlation_id"] == rid

    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:

        async def logged() -> dict | None:  # type: ignore[type-arg]
            return await db.transaction_logs.find_one({"transaction_id": tx_id})

        assert (await eventually(logged, timeout=30))["correlation_id"] == rid
        audit = await db.audit_log.find_one(
            {"action": "transaction.completed", "details.transaction_id": tx_id}
        )
        assert audit is not None
        assert audit["correlation_id"] == rid
    finally:
        await client.close()
