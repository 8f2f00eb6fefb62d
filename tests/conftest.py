"""Test harness: the real infrastructure (started by `make test` through infra/stack.sh)
and, for tests that need them, the six paysys processes on test ports, against a fresh
PostgreSQL database and MongoDB database for this run."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.isolated import NOTIFIED_TOPICS, create_database, drop_database, pin_consumer_group

from paysys.kit.crypto import DEV_DATA_KEYS
from paysys.kit.settings import RELAY_PORT_OFFSET, RELAYED
from paysys_dev.fleet import spawn_relay, spawn_service, stop_processes
from paysys_dev.stack import ROOT, SERVICES, STACK, infra_env, wait_ready
from tests.support.smtp_relay import smtp_relay

_GIVEN: set[int] = set()
FAULTY_TRANSACTIONS = "tests.support.faults:create_app"


def free_port(also: int | None = None) -> int:
    """A port nobody listens on now, never one this run already handed out. Drawn at
    random from 20000-27999: below the kernel's ephemeral range (32768-60999), where
    the OS would pick it again as the source port of some outgoing connection before a
    test's process binds it (a gateway then exits with 3, address in use), and below
    the bench's 28000s and chaos's 29000s; no infrastructure port is in it. `also`: an
    offset whose port must be free too, and is handed out with it."""
    import random
    import socket

    while True:
        port = random.randint(20000, 27999)
        ports = [port] if also is None else [port, port + also]
        if any(p in _GIVEN for p in ports):
            continue
        try:
            for p in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        _GIVEN.update(ports)
        return port


# A service's relay process on its port + 50, as everywhere (KitSettings.relay_port_of).
TEST_PORTS = {s: free_port(also=RELAY_PORT_OFFSET) for s in SERVICES}
RELAY_TEST_PORTS = {s: TEST_PORTS[s] + RELAY_PORT_OFFSET for s in RELAYED}
# A saga's lease in the suite's stack, shorter than the default 20 s so that the crash
# tests' recovery comes sooner; it must outlast the longest step (3 attempts x 3 s).
LEASE_SECONDS = 11.0
ROTATION_KEY = "test2:" + base64.b64encode(b"test-only-rotation-data-key-32by").decode()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that stop shared infrastructure run last, so nothing else sees the outage.
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "disruptive: stops and restarts shared infrastructure")


def stack_cmd(*args: str) -> None:
    subprocess.run(["bash", str(STACK), *args], check=True, cwd=ROOT)


@dataclass
class Infra:
    env: dict[str, str]
    database_url: str
    dsn: str
    db_name: str
    redis_url: str
    kafka: str
    mongodb_url: str
    inbox: str  # Mailpit's HTTP API: what the services' mail became
    mailpit_smtp: str  # Mailpit's SMTP host:port
    smtp_control: Path  # the test relay's switch files (tests/support/smtp_fault)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    stack_cmd("up", "postgres", "redis", "kafka", "mongodb", "smtp")
    base = infra_env(os.environ)
    db_name = f"paysys_t{int(time.time())}_{uuid.uuid4().hex[:6]}"
    create_database(base["DATABASE_URL"].replace("+asyncpg", ""), db_name)
    database_url = base["DATABASE_URL"].rsplit("/", 1)[0] + "/" + db_name
    env = dict(os.environ)
    env.update(base)
    # The services' mail goes through a relay that fails on demand, on to Mailpit.
    relay_port, smtp_control = free_port(), ROOT / ".run" / "smtp-control" / db_name
    env.update(
        DATABASE_URL=database_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(relay_port),
        PAYSYS_ENV="test",
        PAYSYS_MONGODB_DATABASE=db_name,
        # Kafka is shared with anything else running here (the bench's smoke run): a
        # consumer group of this run's own, so no other stack takes its events.
        PAYSYS_CONSUMER_GROUP=f"paysys-notifications-{db_name}",
        PAYSYS_CONSUMER_START="earliest",  # from where the group is pinned, below
        # Two data keys, the first current: tests/e2e/test_personal_data.py rotates.
        PAYSYS_DATA_KEYS=f"{DEV_DATA_KEYS},{ROTATION_KEY}",
        PAYSYS_LOG_LEVEL="INFO",
        # generous limits for the suite; tests/e2e/test_gateway_limits.py runs a strict gateway
        PAYSYS_RATE_LIMIT_REGISTER="100000",
        PAYSYS_RATE_LIMIT_LOGIN="100000",
        PAYSYS_RATE_LIMIT_USER="100000",
        PAYSYS_MAIL_BACKOFF_BASE_SECONDS="0.3",
        PAYSYS_MAIL_MAX_ATTEMPTS="3",
        PAYSYS_WEBHOOK_RETRY_BASE_SECONDS="1",
        PAYSYS_WEBHOOK_CLAIM_SECONDS="12",  # a killed sender's claim runs out soon
        PAYSYS_CALL_TIMEOUT_SECONDS="3",
        PAYSYS_LEASE_SECONDS=str(LEASE_SECONDS),
    )
    for service, port in TEST_PORTS.items():
        env[f"PAYSYS_{service.upper()}_PORT"] = str(port)
    asyncio.run(
        pin_consumer_group(
            base["KAFKA_BOOTSTRAP_SERVERS"], env["PAYSYS_CONSUMER_GROUP"], list(NOTIFIED_TOPICS)
        )
    )
    mailpit_smtp = f"{base['SMTP_HOST']}:{base['SMTP_PORT']}"
    with smtp_relay(relay_port, smtp_control, mailpit_smtp):
        yield Infra(
            env=env,
            database_url=database_url,
            dsn=database_url.replace("+asyncpg", ""),
            db_name=db_name,
            redis_url=base["REDIS_URL"],
            kafka=base["KAFKA_BOOTSTRAP_SERVERS"],
            mongodb_url=base["MONGODB_URL"],
            inbox=base["MAIL_INBOX"],
            mailpit_smtp=mailpit_smtp,
            smtp_control=smtp_control,
        )
    # The run's databases go with it (they pile up otherwise); best effort.
    drop_database(base["DATABASE_URL"].replace("+asyncpg", ""), base["MONGODB_URL"], db_name)


@dataclass
class Stack:
    infra: Infra
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{TEST_PORTS[service]}"

    @property
    def gateway(self) -> str:
        return self.url("gateway")

    @property
    def log_dir(self) -> Path:
        return ROOT / ".run" / "test-logs" / self.infra.db_name

    def start(self, *services: str, timeout: float = 120) -> None:
        """These services, and each one's relay process (kit.relays) unless it runs."""
        env = {**self.infra.env, "PAYSYS_RELAYS": "apart"}  # as the chart and fleet run
        urls = {}
        for s in services:
            # transactions with the test-only fault hooks (tests/support/faults.py)
            app = FAULTY_TRANSACTIONS if s == "transactions" else None
            self.procs[s] = spawn_service(s, env, self.log_dir, app=app)
            urls[s] = self.url(s)
            relay = f"{s}-relay"
            if s in RELAYED and (relay not in self.procs or self.procs[relay].poll() is not None):
                port = RELAY_TEST_PORTS[s]
                self.procs[relay] = spawn_relay(s, self.infra.env, self.log_dir, port)
                urls[relay] = f"http://127.0.0.1:{port}"
        wait_ready(urls, timeout, self.procs)

    def stop(self, *services: str) -> None:
        stop_processes({s: self.procs.pop(s) for s in services if s in self.procs})

    def kill(self, service: str) -> None:
        proc = self.procs.pop(service)
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def gateway_of(stack: Stack, name: str, **env: str) -> Iterator[str]:
    """A gateway of a test's own: the suite's environment with these settings on top
    (PAYSYS_GATEWAY_PORT among them), its log under `name`; its URL while it runs."""
    port = env["PAYSYS_GATEWAY_PORT"]
    proc = spawn_service("gateway", {**stack.infra.env, **env}, stack.log_dir / name)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready({"gateway": url}, 60, {"gateway": proc})
        yield url
    finally:
        stop_processes({"gateway": proc})


@pytest.fixture(scope="session")
def stack(infra: Infra) -> Iterator[Stack]:
    s = Stack(infra)
    try:
        s.start(*SERVICES)
        yield s
    finally:
        stop_processes(s.procs)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
        yield client


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


async def eventually(fn: Any, timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Polls an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
