"""Dashboards and alerts, proven against a live Prometheus scraping the real services:
every panel's PromQL parses and (on driven traffic) returns data, every metric name in a
dashboard or rule is exported by some process, the rule unit tests pass, and one real
alert travels Prometheus -> Alertmanager -> SMTP."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from pathlib import Path

import httpx
import pytest

from paysys_dev import inbox
from paysys_dev.fleet import spawn_service, stop_processes
from paysys_dev.stack import ROOT, wait_ready
from tests.conftest import Stack, eventually, free_port
from tests.e2e.helpers import user_with_token
from tests.e2e.money import CARD, deposit, funded_user, move, wallet_for

sys.path.insert(0, str(ROOT / "infra"))
import observability

# Its own Prometheus and Alertmanager, apart from the ones `make run` uses (19090, 19094).
PROM_PORT, AM_PORT, STRICT_GATEWAY_PORT = free_port(), free_port(), free_port()
PROM = f"http://127.0.0.1:{PROM_PORT}"


def test_generated_rules_and_dashboards_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "infra/observability.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    rules = ROOT / "infra/prometheus/rules"
    check = subprocess.run(
        ["promtool", "check", "rules", str(rules / "paysys.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        ["promtool", "test", "rules", "paysys_test.yml"], cwd=rules, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@dataclass
class Observed:
    workdir: Path
    started_at: float


@pytest.fixture(scope="module")
def observed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    work = tmp_path_factory.mktemp("prometheus")
    env = dict(stack.infra.env)
    strict = spawn_service(
        "gateway",
        {**env, "PAYSYS_GATEWAY_PORT": str(STRICT_GATEWAY_PORT), "PAYSYS_RATE_LIMIT_LOGIN": "3"},
        stack.log_dir / "observability",
    )
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "infra/prometheus/render.py"),
            str(work / "prometheus.yml"),
            "--alertmanager",
            f"127.0.0.1:{AM_PORT}",
            "--interval",
            "2s",
            "--alert-for",
            "4s",
            "--extra-target",
            f"gateway=127.0.0.1:{STRICT_GATEWAY_PORT}",
        ],
        env=env,
        check=True,
    )
    smtp = f"{env['SMTP_HOST']}:{env['SMTP_PORT']}"
    am_config = (ROOT / "infra/alertmanager/alertmanager.yml").read_text()
    am_config = am_config.replace("__SMTP__", smtp).replace("group_wait: 10s", "group_wait: 1s")
    (work / "alertmanager.yml").write_text(am_config)
    logs = (work / "prometheus.log").open("wb")
    procs = {
        "alertmanager": subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={work / 'alertmanager.yml'}",
                f"--storage.path={work / 'am'}",
                f"--web.listen-address=127.0.0.1:{AM_PORT}",
                "--cluster.listen-address=",
            ],
            stdout=logs,
            stderr=subprocess.STDOUT,
        ),
        "prometheus": subprocess.Popen(
            [
                "prometheus",
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{PROM_PORT}",
            ],
            stdout=logs,
            stderr=subprocess.STDOUT,
        ),
        "strict-gateway": strict,
    }
    try:
        wait_ready({"gateway": f"http://127.0.0.1:{STRICT_GATEWAY_PORT}"}, 60, {"gateway": strict})
        asyncio.run(_all_targets_up())
        yield Observed(work, time.time())
    finally:
        stop_processes(procs)  # type: ignore[arg-type]


async def _query(client: httpx.AsyncClient, expr: str) -> dict:  # type: ignore[type-arg]
    resp = await client.get(f"{PROM}/api/v1/query", params={"query": expr})
    return resp.json()  # type: ignore[no-any-return]


async def _all_targets_up() -> None:
    async with httpx.AsyncClient(timeout=10) as client:

        async def up() -> bool:
            try:
                body = await _query(client, "count(up == 1)")
            except httpx.HTTPError:
                return False
            result = body.get("data", {}).get("result", [])
            return bool(result) and int(result[0]["value"][1]) >= 7

        await eventually(up, timeout=60, interval=0.5)


async def _drive_traffic(api: httpx.AsyncClient) -> None:
    user, auth = await user_with_token(api)
    await api.post("/users/login", json={"email": user["email"], "password": "wrong-password"})
    await api.get("/users/me")  # 401
    wallet = await wallet_for(api, auth)
    assert (await deposit(api, auth, wallet["id"], "30.00")).status_code == 201
    declined = await deposit(
        api, auth, wallet["id"], "1.00", card={**CARD, "number": "4000000000000002"}
    )
    assert declined.status_code == 400
    _, _, shop = await funded_user(api, "0", account_type="merchant")
    assert (await move(api, auth, "payment", wallet["id"], shop["id"], "2.00")).status_code == 201
    _, _, friend = await funded_user(api, "0")
    assert (
        await move(api, auth, "transfer", wallet["id"], friend["id"], "1.00")
    ).status_code == 201
    await api.get(f"/wallets/{uuid.uuid4()}", headers=auth)  # 404
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{STRICT_GATEWAY_PORT}") as strict:
        for _ in range(5):
            await strict.post("/users/login", json={"email": "x@example.com", "password": "y"})


async def test_every_dashboard_panel_query_runs_and_returns_data(
    observed: Observed, api: httpx.AsyncClient
) -> None:
    await _drive_traffic(api)
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:

        async def scraped() -> bool:
            body = await _query(client, "sum(increase(paysys_rate_limited_total[1m])) > 0")
            return bool(body["data"]["result"])

        await eventually(scraped, timeout=60, interval=1)
        await asyncio.sleep(5)  # a couple more scrapes, so every rate() has two samples
        for dashboard in observability.DASHBOARDS:
            for panel in dashboard.panels:
                for expr in panel.exprs:
                    body = await _query(client, expr)
                    where = f"{dashboard.title} / {panel.title}: {expr}"
                    if body.get("status") != "success":
                        problems.append(f"does not run: {where}: {body.get('error')}")
                    elif not panel.quiet_ok and not body["data"]["result"]:
                        problems.append(f"no data: {where}")
        for alert in observability.ALERTS:
            body = await _query(client, alert.expr)
            if body.get("status") != "success":
                problems.append(f"alert {alert.name} does not run: {body.get('error')}")
    assert problems == []


async def test_every_metric_name_in_dashboards_and_rules_is_exported(stack: Stack) -> None:
    exported: set[str] = set()
    async with httpx.AsyncClient(timeout=10) as client:
        for service in (
            "gateway",
            "users",
            "wallets",
            "transactions",
            "payment_gateway",
            "notifications",
        ):
            text = (await client.get(stack.url(service) + "/metrics")).text
            exported |= set(re.findall(r"^# TYPE (\S+)", text, re.M))
    exprs = [e for d in observability.DASHBOARDS for p in d.panels for e in p.exprs]
    exprs += [a.expr for a in observability.ALERTS]
    used = set()
    for expr in exprs:
        for name in re.findall(r"\b((?:http|paysys|process|python)_[a-z0-9_]+)", expr):
            used.add(
                re.sub(r"_(bucket|sum|count|total)$", "", name)
                if name.endswith(("_bucket", "_sum", "_count"))
                else name
            )
    base = {re.sub(r"_total$", "", n) for n in exported} | exported
    missing = sorted(n for n in used if n not in base and re.sub(r"_total$", "", n) not in base)
    assert missing == []


@pytest.mark.disruptive
async def test_a_stopped_service_fires_a_real_alert_email(observed: Observed, stack: Stack) -> None:
    started = time.time()
    stack.stop("notifications")
    try:

        async def alert_mail() -> list[object]:
            return [
                msg
                for raw in inbox.to(stack.infra.inbox, "oncall@paysys.local", since=started)
                if "ServiceDown" in str((msg := message_from_bytes(raw))["Subject"])
            ]

        [mail, *_] = await eventually(alert_mail, timeout=90, interval=1)
        assert "notifications" in mail.as_string()  # type: ignore[attr-defined]
    finally:
        stack.start("notifications")
