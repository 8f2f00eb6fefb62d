"""The operations port (issue 25.6): with PAYSYS_METRICS_PORT, a process serves
/metrics, /health and /ready there and only there, and the API on its own port only,
so that what the edge lets through never includes them (the chart's 9100)."""

from __future__ import annotations

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
