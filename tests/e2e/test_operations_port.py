"""The operations port (issue 25.6): with PAYSYS_METRICS_PORT, a process serves
/metrics, /health and /ready there and only there, and the API on its own port only,
so that what the edge lets through never includes them (the chart's 9100)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from paysys_dev.fleet import spawn_service, stop_processes
from paysys_dev.stack import wait_ready
from tests.conftest import TEST_PORTS, Stack, free_port, unique_email
from tests.e2e.helpers import PASSWORD, assert_problem


@pytest.fixture(scope="module")
def ports(stack: Stack) -> Iterator[tuple[str, str]]:
    api, ops = free_port(), free_port()
    env = {
        **stack.infra.env,
        "PAYSYS_GATEWAY_PORT": str(api),
        "PAYSYS_METRICS_PORT": str(ops),
        **{f"PAYSYS_{s.upper()}_PORT": str(TEST_PORTS[s]) for s in TEST_PORTS if s != "gateway"},
    }
    proc = spawn_service("gateway", env, stack.log_dir / "operations-port")
    try:
        wait_ready({"gateway": f"http://127.0.0.1:{ops}"}, 60, {"gateway": proc})
        yield f"http://127.0.0.1:{api}", f"http://127.0.0.1:{ops}"
    finally:
        stop_processes({"gateway": proc})


async def test_metrics_and_health_answer_on_the_operations_port_only(
    ports: tuple[str, str],
) -> None:
    api, ops = ports
    async with httpx.AsyncClient(timeout=30) as client:
        for path in ("/metrics", "/health", "/ready"):
            assert (await client.get(ops + path)).status_code == 200, path
            assert_problem(await client.get(api + path), 404, "NOT_FOUND")
        # and the API answers on its port, never on the operations port
        body = {"email": unique_email("ops"), "password": PASSWORD, "full_name": "Ops"}
        assert (await client.post(api + "/users/register", json=body)).status_code == 201
        assert_problem(await client.post(ops + "/users/register", json=body), 404, "NOT_FOUND")
        metrics = (await client.get(ops + "/metrics")).text
        assert "http_requests_total{" in metrics and "/users/register" in metrics


async def test_requests_are_counted_under_their_route_template(stack: Stack) -> None:
    # Every request is counted and timed by its route's template, never its raw path
    # (one label value per wallet would grow without end); those refused before they
    # reach a route (413) are counted too.
    wallet_id = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=stack.url("wallets"), timeout=30) as client:
        assert (await client.get(f"/wallets/{wallet_id}")).status_code == 401
        big = await client.post(
            f"/wallets/{wallet_id}/deactivate",
            content=b"x" * (1024 * 1024 + 1),
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413
        metrics = (await client.get("/metrics")).text
    assert wallet_id not in metrics
    counted = [line for line in metrics.splitlines() if line.startswith("http_requests_total{")]
    assert any('route="/wallets/{wallet_id}"' in x and 'status="401"' in x for x in counted), (
        counted
    )
    # refused before routing: counted, under no route of its own
    assert any('status="413"' in x and 'method="POST"' in x for x in counted), counted
    timed = 'http_request_duration_seconds_count{method="GET",route="/wallets/{wallet_id}"'
    assert timed in metrics.replace('service="wallets",', "")
