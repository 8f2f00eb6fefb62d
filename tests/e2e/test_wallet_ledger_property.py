"""Property: any sequence of credits, transfers out, refunds and retries keeps
balance == sum(ledger entries) >= 0, and equal to a simple model of the same sequence."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paysys.kit.settings import DEV_INTERNAL_TOKEN
from tests.conftest import Stack
from tests.e2e.test_wallets import ledger

ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["credit", "debit", "refund"]), st.integers(1, 5000)),
        st.tuples(st.just("retry"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=ops)
def test_any_sequence_keeps_balance_equal_to_ledger_and_non_negative(
    stack: Stack, sequence: list[tuple[str, int]]
) -> None:
    headers = {"X-Internal-Token": DEV_INTERNAL_TOKEN, "X-User-Id": str(uuid.uuid4())}
    with httpx.Client(base_url=stack.url("wallets"), headers=headers, timeout=30) as c:
        wallet = c.post("/wallets/create", json={"currency": "USD"}).json()
        wid = wallet["id"]
        # Money leaves a wallet only by a transfer: debits go to a wallet of another user.
        sink = c.post(
            "/wallets/create", json={"currency": "USD"}, headers={"X-User-Id": str(uuid.uuid4())}
        ).json()["id"]
        done: list[tuple[str, dict[str, Any]]] = []
        model = 0
        for kind, n in sequence:
            if kind == "retry":
                if not done:
                    continue
                op, body = done[n % len(done)]
            else:
                op = kind
                tx = str(uuid.uuid4())
                body: dict[str, Any] = {"amount": f"{n // 100}.{n % 100:02d}", "transaction_id": tx}
                if op == "refund":
                    body["operation"] = "refund"
                if op == "debit":
                    body = {
                        "transaction_id": tx,
                        "source_wallet_id": wid,
                        "destination_wallet_id": sink,
                        "amount_minor": n,
                        "currency": "USD",
                    }
            path = "/internal/transfers" if op == "debit" else f"/wallets/{wid}/add-funds"
            resp = c.post(path, json=body)
            if resp.status_code == 200:
                if kind != "retry":
                    model += -n if op == "debit" else n
                    done.append((op, body))
            else:
                assert resp.status_code == 400
                assert resp.json()["code"] == "INSUFFICIENT_FUNDS"
                assert op == "debit" and n > model
    balance, total, _ = asyncio.run(ledger(stack, wid))
    assert balance == total == model >= 0
