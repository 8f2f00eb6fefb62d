"""Load benchmark of the money path, against the real stack, with the database's own
limit measured in the same run.

Starts the six processes on bench ports against a fresh database (the infrastructure
must be up: `make bench` does that), seeds users and funds their wallets, then, from a
fixed number of concurrent keep-alive clients (aiohttp):

1. transfers through the gateway for `--seconds` (default 60, 32 clients), each with
   its own Idempotency-Key, as a careful client sends them;
2. deposits and payments, the same way, for `--short-seconds` each;
3. the raw limit of the same PostgreSQL: an asyncpg loop doing what one transfer does to
   the database (a debit, a credit and two ledger rows in one transaction), 32 clients;
4. how long the event tail (Kafka, notifications, email, MongoDB logs) takes to catch up,
   and a check that every transfer got its events, its log and its emails.

It prints, and writes to docs/benchmarks.md with the date, commit and machine:
throughput, latency percentiles, errors by status, CPU ms per transfer of every process
(the six, PostgreSQL, Kafka, FerretDB, Redis, Mailpit, this load generator), the
machine's busy share, peak RSS, and a sampling profile (py-spy) of the busiest process.
Bounded in time; loopback only. `--smoke` is a few seconds' run for `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from pymongo import AsyncMongoClient

from isolated import free_ports, isolated, stop_on_sigterm  # bench/ is the script's folder
from paysys.kit.settings import RELAYED
from paysys_dev import inbox
from paysys_dev.fleet import Fleet
from paysys_dev.stack import ROOT, SERVICES, wait_ready
from reports import write_section

PORTS = free_ports(SERVICES)  # this run's, drawn at random
GATEWAY = f"http://127.0.0.1:{PORTS['gateway']}"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}
INFRA = {  # how to find the infrastructure's processes: /proc/<pid>/cmdline contains
    "postgresql": "postgres",
    # FerretDB's own PostgreSQL backends (the MongoDB records' storage): event tail, not
    # the request path; `postgresql` counts every other backend.
    "postgresql for ferretdb": "postgres: postgres ferretdb ",
    "kafka": "kafka.Kafka",
    "ferretdb": "bin/ferretdb",  # not the PostgreSQL backends serving it
    "redis": "redis-server",
    "mailpit": "bin/mailpit",
}


# -- /proc


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts) - idle) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pids_matching(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and "bench/load.py" not in cmd:
            apart = (INFRA["postgresql for ferretdb"], INFRA["ferretdb"])
            if needle == INFRA["postgresql"] and any(a in cmd for a in apart):
                continue  # counted apart (FerretDB's own command line names postgres too)
            found.append(int(entry.name))
    return found


def _client_port(backend: int) -> int | None:
    """The client's port of a PostgreSQL backend, from its process title
    ("postgres: user db 127.0.0.1(54321) idle")."""
    try:
        title = Path(f"/proc/{backend}/cmdline").read_bytes()
    except OSError:
        return None
    found = re.search(rb" [0-9a-fA-F.:]+\((\d+)\) ", title)
    return int(found.group(1)) if found else None


def _local_ports(pids: list[int]) -> set[int]:
    """The local TCP ports of these processes' sockets (/proc/<pid>/fd, /proc/net/tcp)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class CpuMeter:
    """CPU seconds of named groups of processes between `start` and `stop`. A group
    named in `rescan` (by its cmdline needle) is looked up again at `stop`, so that
    processes born meanwhile count too: PostgreSQL starts a backend per connection.
    `backends_of` moves the PostgreSQL backends serving given processes (matched by the
    client port in a backend's title) from `postgresql` into a group of their own: the
    notifications' queries are event tail, not the request path."""

    def __init__(
        self,
        groups: dict[str, list[int]],
        rescan: dict[str, str] | None = None,
        backends_of: dict[str, list[int]] | None = None,
    ) -> None:
        self.groups = {g: list(pids) for g, pids in groups.items()}
        self.rescan = rescan or {}
        self.backends_of = backends_of or {}
        self.before: dict[int, float] = {}
        self.busy_before = 0.0
        self.t0 = 0.0

    def _split_backends(self) -> None:
        for group, clients in self.backends_of.items():
            ports = _local_ports(clients)
            theirs = {p for p in self.groups.get("postgresql", []) if _client_port(p) in ports}
            self.groups[group] = sorted(set(self.groups.get(group, [])) | theirs)
        taken = {p for group in self.backends_of for p in self.groups[group]}
        if taken:
            self.groups["postgresql"] = [p for p in self.groups["postgresql"] if p not in taken]

    def start(self) -> None:
        for group, needle in self.rescan.items():
            self.groups[group] = pids_matching(needle)
        self._split_backends()
        self.before = {p: cpu_seconds(p) for pids in self.groups.values() for p in pids}
        self.busy_before, self.t0 = machine_busy_seconds(), time.time()

    def stop(self) -> tuple[dict[str, float], float, float]:
        for group, needle in self.rescan.items():
            self.groups[group] = sorted(set(self.groups[group]) | set(pids_matching(needle)))
        self._split_backends()
        used = {
            g: sum(cpu_seconds(p) - self.before.get(p, 0.0) for p in pids)
            for g, pids in self.groups.items()
        }
        wall = time.time() - self.t0
        busy = machine_busy_seconds() - self.busy_before
        return used, busy, wall


# -- load


@dataclass
class Result:
    name: str
    clients: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    codes: collections.Counter[int] = field(default_factory=collections.Counter)
    ok_ids: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0
    ok_status: int = 201  # a capture answers 200

    @property
    def ok(self) -> int:
        return self.codes.get(self.ok_status, 0)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def pct(self, p: int) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100)[p - 1] * 1000

    @property
    def max_ms(self) -> float:
        return max(self.latencies, default=0.0) * 1000


@dataclass
class Person:
    auth: dict[str, str]
    wallet: str
    user_id: str
    email: str


async def seed_person(
    session: aiohttp.ClientSession, i: int, merchant: bool, funded: bool = True
) -> Person:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": "bench-password", "full_name": f"Bench {i}"}
    if merchant:
        body["account_type"] = "merchant"
    async with session.post(f"{GATEWAY}/users/register", json=body) as r:
        assert r.status == 201, await r.text()
        user_id = (await r.json())["id"]
    login = {"email": email, "password": "bench-password"}
    async with session.post(f"{GATEWAY}/users/login", json=login) as r:
        token = (await r.json())["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    async with session.post(f"{GATEWAY}/wallets/create", json={}, headers=auth) as r:
        wallet = (await r.json())["id"]
    if not funded:
        return Person(auth, wallet, user_id, email)
    deposit = {"type": "deposit", "destination_wallet_id": wallet, "amount": "500000.00"}
    async with session.post(
        f"{GATEWAY}/transactions/create", json={**deposit, "card": CARD}, headers=auth
    ) as r:
        assert r.status == 201, await r.text()
    return Person(auth, wallet, user_id, email)


async def drive(
    session: aiohttp.ClientSession,
    result: Result,
    seconds: float,
    make: Any,
    meter: CpuMeter,
) -> None:
    deadline = time.monotonic() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            auth, body = make(rng)
            # As a careful client does: one Idempotency-Key per payment (kept on retries).
            headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
            start = time.perf_counter()
            async with session.post(
                f"{GATEWAY}/transactions/create", json=body, headers=headers
            ) as r:
                payload = await r.json(content_type=None)
                result.codes[r.status] += 1
            result.latencies.append(time.perf_counter() - start)
            if r.status == 201:
                result.ok_ids.append(payload["id"])

    meter.start()
    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(result.clients)))
    result.elapsed = time.monotonic() - started
    result.cpu, result.busy, _ = meter.stop()


async def drive_steps(
    session: aiohttp.ClientSession,
    result: Result,
    seconds: float,
    make: Any,
    step: str,
    meter: CpuMeter,
) -> None:
    """A step on a transaction made for it: each client creates one (`make`: an
    authorization, a payment; not timed), then POSTs `/transactions/{id}/<step>`
    (capture, refund), timed. CPU is metered over both: per step, it is what one
    authorization and its capture (one payment and its refund) cost together."""
    deadline = time.monotonic() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            auth, body, by = make(rng)
            headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
            async with session.post(
                f"{GATEWAY}/transactions/create", json=body, headers=headers
            ) as r:
                made = await r.json(content_type=None)
            if r.status != 201:
                result.codes[1000 + r.status] += 1  # the making failed (shown as 1xxx)
                continue
            start = time.perf_counter()
            async with session.post(
                f"{GATEWAY}/transactions/{made['id']}/{step}",
                json={},
                headers={**by, "Idempotency-Key": uuid.uuid4().hex},
            ) as r:
                await r.read()
                result.codes[r.status] += 1
            result.latencies.append(time.perf_counter() - start)
            if r.status in (200, 201):
                result.ok_ids.append(made["id"])

    meter.start()
    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(result.clients)))
    result.elapsed = time.monotonic() - started
    result.cpu, result.busy, _ = meter.stop()


PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")
# What one transfer does to PostgreSQL, as pgbench (a C client, so that the client's own
# cost is not part of the limit) runs it: both wallets in id order, a debit, a credit and
# two ledger rows, one commit. :n wallets, as many as the load's users.
PGBENCH_SCRIPT = """\\set a random(1, :n)
\\set b 1 + (:a + random(0, :n - 2)) % :n
\\set lo least(:a, :b)
\\set hi greatest(:a, :b)
BEGIN;
UPDATE {schema}.w SET balance = balance - 100 WHERE id = :lo;
UPDATE {schema}.w SET balance = balance + 100 WHERE id = :hi;
INSERT INTO {schema}.l (wallet, amount, balance_after) VALUES (:lo, -100, 0), (:hi, 100, 0);
END;
"""


# A busy wallet's ledger, written straight into the database (a bench-only shortcut: the
# money in it comes from nowhere, and the bench's database is dropped afterwards): credit,
# credit, debit, ... of 1.00, spread evenly over three years up to now.
BUSY_LEDGER = """
WITH s AS (SELECT i, now() - interval '1095 days' + (i * interval '1095 days') / $2 AS at
             FROM generate_series(1, $2::int) AS i)
INSERT INTO wallets.ledger_entries (wallet_id, transaction_id, operation, amount,
  balance_after, kind, description, counterparty_wallet_id, created_at)
SELECT $1, gen_random_uuid(), CASE WHEN i % 3 = 0 THEN 'debit' ELSE 'credit' END,
       CASE WHEN i % 3 = 0 THEN -100 ELSE 100 END, 100 * (i - 2 * (i / 3)),
       'transfer', 'bench entry ' || i, $3, at
  FROM s
"""


async def ledger_reads(
    session: aiohttp.ClientSession, dsn: str, person: Person, other: Person, entries: int, n: int
) -> tuple[list[Result], float]:
    """p50/p99 of GET /wallets/{id}/balance?at= at random instants and of one-month
    statements (JSON), on a wallet with `entries` ledger entries over three years."""
    conn = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        await conn.execute(BUSY_LEDGER, uuid.UUID(person.wallet), entries, uuid.UUID(other.wallet))
        final = 100 * (entries - 2 * (entries // 3))
        await conn.execute(
            "UPDATE wallets.wallets SET balance = $2 WHERE id = $1", uuid.UUID(person.wallet), final
        )
        await conn.execute("ANALYZE wallets.ledger_entries")
    finally:
        await conn.close()
    seeded = time.monotonic() - started
    rng = random.Random(24)
    now = dt.datetime.now(dt.UTC)
    results = []
    for name, path in (
        (f"balance?at= ({entries:,} entries)", "balance"),
        (f"statement, one month, JSON ({entries:,} entries)", "statement"),
    ):
        result = Result(name, 4, ok_status=200)
        count = n if path == "balance" else max(n // 10, 3)
        todo = list(range(count))

        async def client(path: str, result: Result, todo: list[int]) -> None:
            while todo:
                todo.pop()
                at = now - dt.timedelta(seconds=rng.uniform(0, 1095 * 86400))
                if path == "balance":
                    query = {"at": at.isoformat()}
                else:
                    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
                    end = (start + dt.timedelta(days=32)).replace(day=1)
                    query = {"from": start.isoformat(), "to": end.isoformat()}
                t0 = time.perf_counter()
                async with session.get(
                    f"{GATEWAY}/wallets/{person.wallet}/{path}", params=query, headers=person.auth
                ) as r:
                    await r.read()
                    result.codes[r.status] += 1
                result.latencies.append(time.perf_counter() - t0)

        t0 = time.monotonic()
        await asyncio.gather(*(client(path, result, todo) for _ in range(result.clients)))
        result.elapsed = time.monotonic() - t0
        results.append(result)
    return results, seeded


async def raw_db_limit(dsn: str, clients: int, seconds: float, wallets: int) -> tuple[float, float]:
    """Transactions/s of what one transfer does to PostgreSQL, measured by pgbench from
    `clients` connections over `wallets` wallets; and PostgreSQL's CPU ms for each."""
    conn = await asyncpg.connect(dsn)
    schema = f"rawbench_{uuid.uuid4().hex[:6]}"
    await conn.execute(f"""
        CREATE SCHEMA {schema};
        CREATE TABLE {schema}.w (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
        CREATE TABLE {schema}.l (id bigserial PRIMARY KEY, wallet int, amount bigint,
                                 balance_after bigint);
        INSERT INTO {schema}.w SELECT g, 1000000000 FROM generate_series(1, {wallets}) g;
    """)
    await conn.close()
    script = ROOT / ".run" / f"{schema}.sql"
    script.write_text(PGBENCH_SCRIPT.format(schema=schema))
    # pgbench's backends end with it, before a meter could read them: PostgreSQL's share
    # is the machine's busy time less pgbench's own (the rest of the machine is idle).
    busy, client = machine_busy_seconds(), _children_cpu()
    try:
        out = await asyncio.to_thread(
            subprocess.run,
            [
                str(PGBENCH),
                "-n",
                "-c",
                str(clients),
                "-j",
                "2",
                "-T",
                str(int(seconds)),
                "-D",
                f"n={wallets}",
                "-f",
                str(script),
                dsn,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        pg_seconds = machine_busy_seconds() - busy - (_children_cpu() - client)
    finally:
        script.unlink(missing_ok=True)
        conn = await asyncpg.connect(dsn)
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()
    done = int(
        next(
            line.split(":")[1]
            for line in out.stdout.splitlines()
            if line.startswith("number of transactions actually processed")
        ).split("/")[0]
    )
    tps = float(
        next(
            line.split("=")[1].split()[0]
            for line in out.stdout.splitlines()
            if line.startswith("tps =")
        )
    )
    return tps, pg_seconds * 1000 / max(done, 1)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def drive_bulk(
    session: aiohttp.ClientSession,
    result: Result,
    seconds: float,
    make: Any,
    meter: CpuMeter,
    size: int,
) -> None:
    """POST /transactions/batch of `size` transfers from each client, for `seconds`;
    `result` counts items (its latencies are per request)."""
    deadline = time.monotonic() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            auth, first = make(rng)
            items = [first] + [
                {**first, "destination_wallet_id": make(rng)[1]["destination_wallet_id"]}
                for _ in range(size - 1)
            ]
            items = [i for i in items if i["destination_wallet_id"] != i["source_wallet_id"]]
            headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
            start = time.perf_counter()
            async with session.post(
                f"{GATEWAY}/transactions/batch", json={"items": items}, headers=headers
            ) as r:
                payload = await r.json(content_type=None)
            result.latencies.append(time.perf_counter() - start)
            if r.status != 200:
                result.codes[r.status] += 1
                continue
            for t in payload["items"]:
                result.codes[201 if t["status"] == "COMPLETED" else 400] += 1

    meter.start()
    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(result.clients)))
    result.elapsed = time.monotonic() - started
    result.cpu, result.busy, _ = meter.stop()


async def batch_sizes(url: str) -> dict[str, int]:
    """How many wallets batches fell in each size bucket (its metric, cumulative)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as r:
        text = await r.text()
    cumulative = {}
    for line in text.splitlines():
        if line.startswith("paysys_wallet_batch_size_bucket"):
            le = line.split('le="')[1].split('"')[0]
            cumulative[le] = int(float(line.rsplit(" ", 1)[1]))
    buckets, below = {}, 0
    for le, n in cumulative.items():
        buckets[f"<= {le}" if le != "+Inf" else "more"] = n - below
        below = n
    return {k: v for k, v in buckets.items() if v}


async def tail_caught_up(
    dsn: str, mongo_url: str, db_name: str, transfers: list[str], timeout: float
) -> tuple[float | None, dict[str, int]]:
    """Seconds until every transfer's events, log and emails are through (None if not
    within `timeout`), and the counts last seen. Checked per transfer, not on totals:
    every transfer answered 201 is COMPLETED; each COMPLETED transfer has exactly one
    MongoDB log and its completed event exactly its two emails (sent, received), none
    more, and no log is of anything else. Every wait is bounded."""
    started = time.monotonic()
    want = set(transfers)
    counts: dict[str, int] = {}
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        mongo_url, tz_aware=True, serverSelectionTimeoutMS=5000, socketTimeoutMS=10000
    )

    async def poll() -> float:
        conn = await asyncpg.connect(dsn, timeout=10, command_timeout=10)
        try:
            while True:
                outbox = 0
                for schema in ("wallets", "transactions"):
                    outbox += await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox")
                counts["outbox rows left"] = outbox
                per_event = await conn.fetch(
                    "SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) AS jobs"
                    " FROM notifications.email_jobs WHERE kind IN"
                    " ('transfer_sent', 'transfer_received') GROUP BY event_id"
                )
                counts["transfers with both emails sent"] = sum(
                    1 for r in per_event if r["sent"] == r["jobs"] == 2
                )
                counts["events with more than two emails"] = sum(
                    1 for r in per_event if r["jobs"] > 2
                )
                completed = {
                    str(r["id"])
                    for r in await conn.fetch(
                        "SELECT id FROM transactions.transactions"
                        " WHERE type = 'transfer' AND status = 'COMPLETED'"
                    )
                }
                counts["answered 201 but not COMPLETED"] = len(want - completed)
                logged = collections.Counter(
                    [
                        d["transaction_id"]
                        async for d in client[db_name].transaction_logs.find(
                            {"type": "transfer"}, {"transaction_id": 1}
                        )
                    ]
                )
                counts["transfers with their log"] = sum(1 for t in completed if logged[t] == 1)
                counts["transfers logged twice"] = sum(1 for t in completed if logged[t] > 1)
                counts["logs of no completed transfer"] = sum(
                    n for t, n in logged.items() if t not in completed
                )
                if (
                    outbox == 0
                    and not counts["answered 201 but not COMPLETED"]
                    and not counts["logs of no completed transfer"]
                    and counts["transfers with their log"] == len(completed)
                    and counts["transfers with both emails sent"] == len(completed)
                    and not counts["events with more than two emails"]
                    and not counts["transfers logged twice"]
                ):
                    return time.monotonic() - started
                await asyncio.sleep(1)
        finally:
            await conn.close()

    try:
        return await asyncio.wait_for(poll(), timeout), counts
    except TimeoutError:
        return None, counts
    finally:
        await client.close()


def profile(pid: int, seconds: int, out: Path) -> list[str]:
    """Top 10 frames (own time) of a process, sampled by py-spy while it works; the
    collapsed stacks stay in `out` (for a flame graph, or speedscope)."""
    spy = Path(sys.executable).parent / "py-spy"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            str(spy),
            "record",
            "-p",
            str(pid),
            "-d",
            str(seconds),
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not out.exists():
        return [f"(py-spy failed: {proc.stderr.strip()[:200]})"]
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        own[leaf] += int(count)
        total += int(count)
    return [f"{n * 100 / max(total, 1):5.1f}%  {frame}" for frame, n in own.most_common(10)]


# -- the run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--short-seconds", type=float, default=15)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--bulk-clients", type=int, default=8)
    parser.add_argument("--bulk-size", type=int, default=100, help="transfers per bulk request")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for make test")
    parser.add_argument("--instances", type=int, default=1, help="of each process, via HAProxy")
    parser.add_argument(
        "--relays",
        choices=("apart", "inline"),
        default="apart",
        help="the services' relays in processes of their own (as deployed), or inside them",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--profile-all",
        type=Path,
        metavar="DIR",
        help="also sample every one of the six during the transfer run, stacks into DIR",
    )
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.short_seconds, args.users, args.clients = 3, 2, 6, 4
        args.bulk_clients, args.bulk_size = 2, 10

    stop_on_sigterm()
    run_stack = isolated(
        "paysys_bench",
        PORTS["gateway"],
        PAYSYS_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    )
    base, db_name, dsn, env = run_stack.base, run_stack.db_name, run_stack.dsn, run_stack.env
    if not args.smoke:  # the local sink's earlier mail (the report says why)
        inbox.clear(base["MAIL_INBOX"])
    logs = ROOT / ".run" / "bench-logs" / db_name
    fleet = Fleet(
        dict.fromkeys(SERVICES, env),
        PORTS,
        logs,
        logs,
        args.instances,
        spares=False,
        relays=args.relays,
    )
    try:
        fleet.start()
        wait_ready(fleet.ready_urls(), 180, fleet.procs)
        wait_ready({"gateway": GATEWAY}, 60)
        pids = {s: [fleet.procs[n].pid for n in fleet.names(s)] for s in SERVICES}
        # Every service's relay processes: the event tail (kit.relays).
        relays = [n for s in RELAYED for n in fleet.names(f"{s}-relay") if n in fleet.procs]
        pids["relays"] = [fleet.procs[n].pid for n in relays]
        groups = dict(pids)
        if fleet.haproxy is not None:  # its master and its worker
            groups["haproxy"] = pids_matching(str(logs / "haproxy.cfg"))
        groups.update({name: pids_matching(needle) for name, needle in INFRA.items()})
        groups["load generator"] = [os.getpid()]
        report = asyncio.run(run(args, groups, dsn, base["MONGODB_URL"], db_name, pids))
        report.peaks = {s: sum(peak_rss_mib(pid) for pid in pids[s]) for s in [*SERVICES, "relays"]}
    finally:
        fleet.stop()
        run_stack.drop()
    text = report.render(args)
    print(text)
    if args.smoke and report.tail_seconds is None:
        # Every answered transfer's log and emails, exactly: the smoke run fails if not.
        raise SystemExit(f"the event tail did not match the transfers: {report.tail_counts}")
    if not args.smoke:
        # One section per instance count, so that N=1 and N=2 stand side by side.
        title = "One instance of each process"
        if args.instances > 1:
            title = f"{args.instances} instances of each process, behind HAProxy"
        section = text.replace("\n## ", "\n### ").replace("# Benchmarks", f"## {title}", 1)
        name = "bench" if args.instances == 1 else f"bench-{args.instances}-instances"
        write_section(args.out, "Benchmarks", name, section)


@dataclass
class Report:
    transfers: Result
    deposits: Result
    payments: Result
    raw_rate: float
    raw_pg_ms: float
    tail_seconds: float | None
    tail_counts: dict[str, int]
    hottest: str
    top_frames: list[str]
    peaks: dict[str, float] = field(default_factory=dict)
    bulk: Result | None = None
    bulk_tail: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)
    steps: list[Result] = field(default_factory=list)  # captures, refunds
    reads: list[Result] = field(default_factory=list)  # balance?at=, statements
    seed_seconds: float = 0.0
    ledger_entries: int = 0

    def render(self, args: argparse.Namespace) -> str:
        t = self.transfers
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        cores = os.cpu_count() or 1
        ratio = t.rate / self.raw_rate if self.raw_rate else 0.0
        bulk_ratio = self.bulk.rate / self.raw_rate if self.raw_rate and self.bulk else 0.0

        def path_ms(r: Result) -> float:
            path = ("gateway", "transactions", "wallets", "postgresql")
            return sum(r.cpu.get(k, 0.0) for k in path) * 1000 / max(r.ok, 1)

        def tail_ms(r: Result) -> float:
            tail = (
                "relays",
                "postgresql for relays",
                "kafka",
                "notifications",
                "postgresql for notifications",
                "ferretdb",
                "postgresql for ferretdb",
                "mailpit",
            )
            return sum(r.cpu.get(k, 0.0) for k in tail) * 1000 / max(r.ok, 1)

        lines = [
            "# Benchmarks",
            "",
            f"Written by `make bench` (`bench/load.py`) on "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit `{commit}`, on "
            f"{cores} cores ({platform.machine()}, {platform.processor() or 'cpu'}), Python "
            f"{platform.python_version()}. Everything on this one machine: the six processes "
            f"({args.instances} of each{', behind HAProxy' if args.instances > 1 else ''}; "
            f"the relays {'apart' if args.relays == 'apart' else 'inside them'}), "
            "PostgreSQL, Redis, Kafka, FerretDB, Mailpit and the load "
            "generator (aiohttp, keep-alive). Mailpit is emptied first: what it costs per "
            "message grows with what it holds (0.87 ms per transfer empty, 1.29 holding the "
            "1.1 GB that earlier runs had left).",
            "",
            "## Throughput and latency through the gateway",
            "",
            "| operation | clients | seconds | ok/s | p50 ms | p95 ms | p99 ms | max ms "
            "| answers |",
            "|---|---|---|---|---|---|---|---|---|",
            *[
                f"| {r.name} | {r.clients} | {r.elapsed:.0f} | {r.rate:.1f} | {r.pct(50):.1f} "
                f"| {r.pct(95):.1f} | {r.pct(99):.1f} | {r.max_ms:.1f} | "
                f"{', '.join(f'{c}: {n}' for c, n in sorted(r.codes.items()))} |"
                for r in (t, self.deposits, self.payments, *self.steps)
            ],
            "",
            *(
                [
                    "A capture's and a refund's latency is that of the step alone; each "
                    "client first makes the transaction it acts on (an authorization, a "
                    "payment), untimed. Request-path CPU per step, with its making: "
                    + ", ".join(f"{r.name}: {path_ms(r):.2f} ms" for r in self.steps)
                    + ".",
                    "",
                ]
                if self.steps
                else []
            ),
            *(
                [
                    "## Reading a busy wallet's ledger",
                    "",
                    f"One wallet given {self.ledger_entries:,} ledger entries over three "
                    f"years (about {self.ledger_entries // 36:,} a month, written by SQL in "
                    f"{self.seed_seconds:.0f} s), then read through the gateway from 4 "
                    "clients at random instants and months: the balance at an instant is "
                    "one step down the (wallet_id, created_at, id) index; a month's "
                    "statement reads and renders its entries.",
                    "",
                    "| read | requests | p50 ms | p95 ms | p99 ms | max ms | answers |",
                    "|---|---|---|---|---|---|---|",
                    *[
                        f"| {r.name} | {len(r.latencies)} | {r.pct(50):.1f} | {r.pct(95):.1f} "
                        f"| {r.pct(99):.1f} | {r.max_ms:.1f} | "
                        f"{', '.join(f'{c}: {n}' for c, n in sorted(r.codes.items()))} |"
                        for r in self.reads
                    ],
                    "",
                ]
                if self.reads
                else []
            ),
            "## Against the database's own limit (same run, same PostgreSQL)",
            "",
            f"pgbench (a C client) doing what one transfer does to the database (both "
            f"wallets in id order: debit, credit, two ledger rows, one commit) from "
            f"{args.clients} connections over {args.users} wallets, as many as the load's "
            f"users: **{self.raw_rate:.0f} transactions/s** ({self.raw_pg_ms:.2f} ms of "
            f"PostgreSQL CPU each). The system's transfers/s over that: **{ratio:.3f}**; "
            f"bulk items/s over that: **{bulk_ratio:.3f}**.",
            "",
            "## Request path and group commit",
            "",
            f"CPU per transfer on the request path (gateway, transactions, wallets, their "
            f"PostgreSQL): **{path_ms(t):.2f} ms**; the event tail (the relay processes and "
            f"the PostgreSQL backends serving them, Kafka, notifications and its backends, "
            f"FerretDB and its backends, the Mailpit) apart: "
            f"{tail_ms(t):.2f} ms. A backend is the notifications' (or the relays') when the "
            f"client end of its connection is a socket of such a process (its title names "
            f"the client's port); before 2026-12-02 every backend but FerretDB's counted as "
            f"the request path's, and before 2026-12-08 the relays ran inside the services "
            f"(their CPU and their backends' counted on the request path).",
            "",
            f"Moves per wallets batch (one database transaction each) during the transfer "
            f"run: {', '.join(f'{k}: {v}' for k, v in self.sizes.items()) or 'none seen'}.",
            "",
            *(
                [
                    f"Bulk: `POST /transactions/batch` with {args.bulk_size} transfers each "
                    f"from {b.clients} clients: **{b.rate:.0f} items/s** completed, "
                    f"p50 {b.pct(50):.0f} ms and p99 {b.pct(99):.0f} ms per request, "
                    f"**{path_ms(b):.3f} ms** of request-path CPU per item "
                    f"(answers: {dict(sorted(b.codes.items()))}); the event tail drained "
                    f"{self.bulk_tail:.1f} s after it.",
                ]
                if (b := self.bulk) is not None
                else []
            ),
            "",
            "## Where the CPU goes (transfer run)",
            "",
            f"The machine was busy {t.busy:.0f} of the {cores * t.elapsed:.0f} CPU-seconds "
            f"its cores had ({t.busy * 100 / max(cores * t.elapsed, 1):.0f} %).",
            "",
            "| process | CPU seconds | CPU ms per transfer |",
            "|---|---|---|",
            *[
                f"| {name} | {sec:.1f} | {sec * 1000 / max(t.ok, 1):.2f} |"
                for name, sec in sorted(t.cpu.items(), key=lambda kv: -kv[1])
            ],
            f"| **all** | {sum(t.cpu.values()):.1f} | "
            f"{sum(t.cpu.values()) * 1000 / max(t.ok, 1):.2f} |",
            "",
            "## The event tail",
            "",
            (
                f"After the load, Kafka, the notifications (two emails per transfer) and the "
                f"MongoDB transaction logs were through in **{self.tail_seconds:.1f} s**. "
                f"End to end, every transfer with its emails, records and events: {t.ok} in "
                f"{t.elapsed + self.tail_seconds:.1f} s, **"
                f"{t.ok / (t.elapsed + self.tail_seconds):.0f} transfers/s**: what the whole "
                f"system sustains on this machine with its event tail keeping up (the "
                f"request path alone answered {t.rate:.0f}/s while the tail fell behind)."
                if self.tail_seconds is not None
                else "The event tail had **not** caught up within the time allowed."
            ),
            f" Counts: {self.tail_counts} for {t.ok} transfers.",
            "",
            "## Peak resident memory (MiB)",
            "",
            "| process | peak RSS |",
            "|---|---|",
            *[f"| {s} | {m:.0f} |" for s, m in self.peaks.items()],
            f"| **all together** | {sum(self.peaks.values()):.0f} |",
            "",
            f"## Profile of the busiest process ({self.hottest}), top 10 frames by own time",
            "",
            "py-spy sees Python frames only: time in compiled code (asyncpg's protocol, "
            "uvloop, the socket calls under them) counts to the Python frame that called "
            "it, and `Runner.run` is the event loop itself. On a saturated machine it also "
            "counts a process that is runnable but waiting for a core, at the line where "
            "it stopped: a socket write that wakes another process (asyncpg's "
            "`_do_execute` waking PostgreSQL) collects those waits. perf on the same "
            "process puts asyncpg's compiled code at 2-3 % of its CPU, and CPython's "
            "interpreter at two thirds.",
            "",
            "```",
            *self.top_frames,
            "```",
            "",
        ]
        return "\n".join(lines)


async def run(
    args: argparse.Namespace,
    groups: dict[str, list[int]],
    dsn: str,
    mongo_url: str,
    db_name: str,
    pids: dict[str, list[int]],
) -> Report:
    connector = aiohttp.TCPConnector(limit=args.clients * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(8)

        async def seeded(i: int, merchant: bool) -> Person:
            async with sem:
                return await seed_person(session, i, merchant)

        people = await asyncio.gather(*(seeded(i, False) for i in range(args.users)))
        merchants = await asyncio.gather(*(seeded(i, True) for i in range(4)))
        meter = CpuMeter(
            groups,
            rescan={p: INFRA[p] for p in ("postgresql", "postgresql for ferretdb")},
            backends_of={
                "postgresql for notifications": pids["notifications"],
                "postgresql for relays": pids["relays"],
            },
        )

        def transfer(rng: random.Random) -> tuple[dict[str, str], dict[str, Any]]:
            a, b = rng.sample(people, 2)
            return a.auth, {
                "type": "transfer",
                "source_wallet_id": a.wallet,
                "destination_wallet_id": b.wallet,
                "amount": "1.00",
            }

        transfers = Result("transfer", args.clients)
        hottest_name = "transactions"
        frames: list[str] = []
        load = asyncio.create_task(drive(session, transfers, args.seconds, transfer, meter))
        if not args.smoke:
            # Find the busiest of the six over a few seconds of load, then profile it.
            await asyncio.sleep(min(5, args.seconds / 6))
            six = CpuMeter({s: pids[s] for s in SERVICES})
            six.start()
            await asyncio.sleep(min(5, args.seconds / 6))
            used, _, _ = six.stop()
            hottest_name = max(used, key=lambda s: used[s])
            seconds = int(min(15, args.seconds / 3))
            folder = args.profile_all or ROOT / ".run" / "bench-profiles"
            sampled = [hottest_name] + (
                [s for s in SERVICES if s != hottest_name] * bool(args.profile_all)
            )
            tops = await asyncio.gather(
                *(
                    asyncio.to_thread(profile, pids[s][0], seconds, folder / f"{s}.txt")
                    for s in sampled
                )
            )
            frames = tops[0]
        await load
        # (the request path answers faster than the tail keeps up: its backlog after a
        # 60 s run took about a minute to drain in the 2026-12-07 run)
        tail, counts = await tail_caught_up(dsn, mongo_url, db_name, transfers.ok_ids, 180)

        def deposit(rng: random.Random) -> tuple[dict[str, str], dict[str, Any]]:
            p = rng.choice(people)
            return p.auth, {
                "type": "deposit",
                "destination_wallet_id": p.wallet,
                "amount": "5.00",
                "card": CARD,
            }

        def payment(rng: random.Random) -> tuple[dict[str, str], dict[str, Any]]:
            p, m = rng.choice(people), rng.choice(merchants)
            return p.auth, {
                "type": "payment",
                "source_wallet_id": p.wallet,
                "destination_wallet_id": m.wallet,
                "amount": "2.50",
            }

        def authorization(rng: random.Random) -> tuple[Any, ...]:
            p, m = rng.choice(people), rng.choice(merchants)
            _, body = payment(rng)
            body = {**body, "source_wallet_id": p.wallet, "destination_wallet_id": m.wallet}
            return p.auth, {**body, "capture": "manual"}, m.auth

        def refundable(rng: random.Random) -> tuple[Any, ...]:
            p, m = rng.choice(people), rng.choice(merchants)
            _, body = payment(rng)
            body = {**body, "source_wallet_id": p.wallet, "destination_wallet_id": m.wallet}
            return p.auth, body, m.auth

        sizes = await batch_sizes(f"http://127.0.0.1:{PORTS['wallets']}")
        deposits = Result("deposit", args.clients)
        await drive(session, deposits, args.short_seconds, deposit, meter)
        payments = Result("payment", args.clients)
        await drive(session, payments, args.short_seconds, payment, meter)
        steps = []
        for name, step, make in (
            ("capture (of an authorization)", "capture", authorization),
            ("refund (of a payment)", "refund", refundable),
        ):
            result = Result(name, args.clients, ok_status=200 if step == "capture" else 201)
            await drive_steps(session, result, args.short_seconds, make, step, meter)
            steps.append(result)
        bulk = Result("bulk transfer (items)", args.bulk_clients)
        await drive_bulk(session, bulk, args.short_seconds, transfer, meter, args.bulk_size)
        drained = time.monotonic()
        await tail_caught_up(dsn, mongo_url, db_name, transfers.ok_ids, 120)
        bulk_tail = time.monotonic() - drained
        busy = await seed_person(session, 900, False, funded=False)  # its ledger: SQL
        other = await seed_person(session, 901, False, funded=False)
        entries = 10_000 if args.smoke else 1_000_000
        reads, seed_seconds = await ledger_reads(
            session, dsn, busy, other, entries, 20 if args.smoke else 400
        )
    raw_rate, raw_pg_ms = await raw_db_limit(dsn, args.clients, min(args.seconds, 15), args.users)
    return Report(
        transfers,
        deposits,
        payments,
        raw_rate,
        raw_pg_ms,
        tail,
        counts,
        hottest_name,
        frames,
        bulk=bulk,
        bulk_tail=bulk_tail,
        sizes=sizes,
        steps=steps,
        reads=reads,
        seed_seconds=seed_seconds,
        ledger_entries=entries,
    )


if __name__ == "__main__":
    main()
