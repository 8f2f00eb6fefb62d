"""Schemathesis against the gateway's public OpenAPI document: whatever a client sends,
the answer is never a 5xx, it matches the document (status, content type, headers, body),
and every error is problem+json with a machine-readable code.

Three runs: valid input (positive), invalid input (negative), and stateful sequences that
follow the document's links (create a wallet, then read, deactivate and fund it; create a
transaction, then read it; log in, then refresh). Header parameters are generated too:
`X-Request-ID` on every operation and `Idempotency-Key` on createTransaction.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from bench.reports import write_section
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from paysys_dev.stack import ROOT
from tests.conftest import Stack
from tests.e2e.helpers import PASSWORD, unique_email
from tests.e2e.money import CARD

# A short run in make test; `make fuzz` asks for many more.
EXAMPLES = int(os.environ.get("PAYSYS_FUZZ_EXAMPLES", "20"))
STATEFUL_STEPS = int(os.environ.get("PAYSYS_FUZZ_STATEFUL", "80"))  # 28 operations now
# make test replays the same short run; make fuzz explores anew each time.
DERANDOMIZE = "PAYSYS_FUZZ_EXAMPLES" not in os.environ

SEEN: Counter[tuple[str, str, int]] = Counter()


def problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error is problem+json with a code and the status it was sent with."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0]
    where = (case.method, case.path, response.status_code, response.text[:300])
    assert content_type.startswith("application/problem+json"), where
    body = response.json()
    assert body["code"] and body["status"] == response.status_code, where
    assert "Traceback" not in response.text, where
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    problem_json,
]


@pytest.fixture(scope="module")
def public_schema(stack: Stack) -> Any:
    doc = httpx.get(stack.gateway + "/openapi.json", timeout=30).json()
    return schemathesis.openapi.from_dict(doc)


def _user(stack: Stack) -> tuple[dict[str, str], str]:
    email = unique_email("fuzz")
    with httpx.Client(base_url=stack.gateway, timeout=30) as c:
        c.post("/users/register", json={"email": email, "password": PASSWORD, "full_name": "F"})
        token = c.post("/users/login", json={"email": email, "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}, email


def _headers_for(case: Any, auth: dict[str, str]) -> dict[str, str]:
    # Logging out would end the session every later case uses: logout is fuzzed without
    # a token (and its happy path is tested in test_sessions).
    return {} if case.path == "/users/logout" else dict(auth)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_gets_a_server_error_or_an_undocumented_answer(
    public_schema: Any, stack: Stack, mode: GenerationMode
) -> None:
    # Driven by hand rather than through schemathesis' pytest plugin, which does not
    # load under the pytest version locked here.
    auth, _ = _user(stack)
    operations = [result.ok() for result in public_schema.get_all_operations()]
    assert len(operations) >= 13
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=DERANDOMIZE,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=stack.gateway, headers=_headers_for(case, auth))
            SEEN[(f"{case.method} {case.path}", mode.value, response.status_code)] += 1
            case.validate_response(response, checks=CHECKS)

        check()
    _write_summary()


def _pays(ctx: Any, body: Any) -> Any:
    """Guides the fuzzer onto the money path: a deposit it generates (into a wallet a
    link gave it) gets a test card that succeeds and a modest amount, and keeps only a
    deposit's fields (a link sets `type` on a body generated for any of the three
    kinds: a transfer's or a payment's fields would make it a 422); the rest stays as
    generated. Without it no generated card passes the Luhn check and
    createTransaction never answered 201 (docs/reliability.md's table)."""
    operation = getattr(ctx, "operation", None)
    if operation is None or operation.path != "/transactions/create":
        return body
    if not isinstance(body, dict) or body.get("type") != "deposit":
        return body
    amount = body.get("amount")
    modest = isinstance(amount, str) and re.fullmatch(r"[1-9][0-9]{0,2}(\.[0-9]{1,2})?", amount)
    kept = {k: v for k, v in body.items() if k in DEPOSIT_FIELDS}
    if SCENARIO_WALLET and not _is_scenario_wallet(kept.get("destination_wallet_id")):
        # a generated id names no wallet: the scenario's own (a link's stays)
        kept["destination_wallet_id"] = SCENARIO_WALLET[0]
    return {**kept, "card": dict(CARD), "amount": amount if modest else "5.00"}


# The current scenario's EUR wallet, and every wallet id its answers named so far.
SCENARIO_WALLET: list[str] = []
KNOWN_WALLETS: set[str] = set()


def _is_scenario_wallet(wallet_id: Any) -> bool:
    return isinstance(wallet_id, str) and wallet_id in KNOWN_WALLETS


DEPOSIT_FIELDS = ("type", "destination_wallet_id", "amount", "currency", "description")


def test_stateful_sequences_follow_the_links(public_schema: Any, stack: Stack) -> None:
    public_schema.hook("map_body")(_pays)
    # The scenarios follow the links with valid input: negative cases (a missing token,
    # a broken body) are the two tests above's; here they would end most scenarios at
    # their first 401 or 422, short of the money path.
    generation = public_schema.config.generation
    modes = list(generation.modes)
    generation.update(modes=[GenerationMode.POSITIVE])
    try:
        paid = _stateful(public_schema, stack, STATEFUL_STEPS)
    finally:
        public_schema.hooks.unregister(_pays)
        generation.update(modes=modes)
    # The money path was reached: transactions created (201), each read back as created.
    assert paid, SEEN
    with httpx.Client(base_url=stack.gateway, timeout=30) as c:
        for tx, auth in paid:
            got = c.get(f"/transactions/{tx['id']}", headers=auth)
            assert got.status_code == 200, got.text
            assert {k: got.json()[k] for k in ("id", "type", "amount")} == {
                k: tx[k] for k in ("id", "type", "amount")
            }


def _stateful(
    public_schema: Any, stack: Stack, steps: int
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Runs the scenarios; the transactions they created, with their owner's auth."""
    machine = public_schema.as_state_machine()
    created: set[str] = set()
    read_back: Counter[str] = Counter()
    paid: list[tuple[dict[str, Any], dict[str, str]]] = []

    class Sequences(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # A new user per scenario, so that its first wallets are created (one per
            # currency) and what follows the links acts on them; it has a EUR wallet
            # from the start, where a generated deposit that names no wallet goes.
            self.auth, _ = _user(stack)
            with httpx.Client(base_url=stack.gateway, timeout=30) as c:
                made = c.post("/wallets/create", json={"currency": "EUR"}, headers=self.auth)
            SCENARIO_WALLET[:] = [made.json()["id"]]
            KNOWN_WALLETS.add(made.json()["id"])

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": stack.gateway, "headers": _headers_for(case, self.auth)}

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            SEEN[(f"{case.method} {case.path}", "stateful", response.status_code)] += 1
            if case.path.startswith("/wallets") and response.status_code in (200, 201):
                body = response.json()
                KNOWN_WALLETS.update(
                    str(w["id"])
                    for w in body.get("items", [body])
                    if isinstance(w, dict) and "id" in w
                )
            if case.method == "POST" and response.status_code == 201:
                created.add(str(response.json().get("id")))
                if case.path == "/transactions/create":
                    paid.append((response.json(), dict(self.auth)))
            acted_on = set(map(str, (case.path_parameters or {}).values())) & created
            if response.status_code == 200 and acted_on:
                read_back[f"{case.method} {case.path}"] += 1

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Sequences.run(
        settings=settings(
            max_examples=steps,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=DERANDOMIZE,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The links were followed: what one call created, a later one read or changed.
    assert created and read_back, (created, read_back, SEEN)
    _write_summary()
    return paid


def _write_summary() -> None:
    summary = os.environ.get("PAYSYS_FUZZ_SUMMARY")
    if not summary:  # `make fuzz` keeps what it tried
        return
    by_op: dict[str, dict[str, list[str]]] = {}
    for (op, mode, status), n in sorted(SEEN.items()):
        if mode and n:
            by_op.setdefault(op, {}).setdefault(mode, []).append(f"{status}: {n}")
    calls = sum(SEEN.values())
    modes = ("positive", "negative", "stateful")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    when = dt.datetime.now(dt.UTC)
    text = (
        f"## Fuzzing\n\nWritten by `make fuzz` on {when:%Y-%m-%d %H:%M} UTC, commit "
        f"`{commit}`, on {os.cpu_count()} cores ({platform.machine()}): schemathesis over "
        "the gateway's /openapi.json, "
        f"{EXAMPLES} examples per operation in each of the positive and negative modes, and "
        f"{STATEFUL_STEPS} stateful scenarios that follow the document's links (create, "
        f"then read). {calls} calls. Every answer was checked: no 5xx, status, content type, "
        "headers and body as documented, every error problem+json with a code (the run "
        "fails otherwise). Header parameters are generated too: `X-Request-ID` everywhere "
        "and `Idempotency-Key` on createTransaction.\n\n"
        "| operation | "
        + " | ".join(modes)
        + " |\n|---|---|---|---|\n"
        + "".join(
            f"| {op} | " + " | ".join(", ".join(answers.get(m, [])) for m in modes) + " |\n"
            for op, answers in by_op.items()
        )
    )
    write_section(Path(summary), "Reliability", "fuzz", text)
