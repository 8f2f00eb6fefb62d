"""Schemathesis against the gateway's public OpenAPI document: whatever a client sends,
the answer is never a 5xx, and every error is problem+json with a machine-readable code."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import Stack
from tests.e2e.helpers import PASSWORD, unique_email

# A short run in make test; `make fuzz` asks for many more.
EXAMPLES = int(os.environ.get("PAYSYS_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def public_schema(stack: Stack) -> Any:
    doc = httpx.get(stack.gateway + "/openapi.json", timeout=30).json()
    return schemathesis.openapi.from_dict(doc)


@pytest.fixture(scope="module")
def auth_headers(stack: Stack) -> dict[str, str]:
    email = unique_email("fuzz")
    with httpx.Client(base_url=stack.gateway, timeout=30) as c:
        c.post("/users/register", json={"email": email, "password": PASSWORD, "full_name": "F"})
        token = c.post("/users/login", json={"email": email, "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def test_no_input_gets_a_server_error_or_a_bare_error(
    public_schema: Any, stack: Stack, auth_headers: dict[str, str]
) -> None:
    # Driven by hand rather than through schemathesis' pytest plugin, which does not
    # load under the pytest version locked here.
    operations = [result.ok() for result in public_schema.get_all_operations()]
    assert len(operations) >= 13
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            headers = {} if case.path == "/users/logout" else dict(auth_headers)
            response = case.call(base_url=stack.gateway, headers=headers, timeout=30)
            seen[(f"{case.method} {case.path}", response.status_code)] += 1
            where = (case.method, case.path, response.status_code, response.text[:300])
            assert response.status_code < 500, where
            if response.status_code >= 400:
                content_type = response.headers.get("content-type", [""])
                if isinstance(content_type, list):
                    content_type = content_type[0]
                assert content_type.startswith("application/problem+json"), where
                body = response.json()
                assert body["code"] and body["status"] == response.status_code, where
                assert "Traceback" not in response.text

        check()
    summary = os.environ.get("PAYSYS_FUZZ_SUMMARY")
    if summary:  # `make fuzz` keeps what it tried
        by_op: dict[str, list[str]] = {}
        for (op, status), n in sorted(seen.items()):
            by_op.setdefault(op, []).append(f"{status}: {n}")
        Path(summary).write_text(
            "# Fuzzing\n\nWritten by `make fuzz` (schemathesis over the gateway's "
            f"/openapi.json, {EXAMPLES} examples per operation): {sum(seen.values())} calls, "
            "no 5xx, every error problem+json with a code (the run fails otherwise).\n\n"
            "| operation | answers |\n|---|---|\n"
            + "".join(f"| {op} | {', '.join(answers)} |\n" for op, answers in by_op.items())
        )
