"""Load benchmark: transfers through the gateway against the real stack.

Starts the six processes on bench ports against a fresh database (the infrastructure
must be up: `make bench` does that), registers users, funds their wallets by card, then
sends transfers from a fixed number of concurrent clients for a fixed time. Prints
throughput, latency percentiles and each process's resident memory, and writes them to
docs/benchmarks.md. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from paysys.cli import ROOT, SERVICES, infra_env, spawn_service, stop_processes, wait_ready

PORTS = {s: 28000 + i for i, s in enumerate(SERVICES)}
GATEWAY = f"http://127.0.0.1:{PORTS['gateway']}"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts) - idle) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def setup_user(session: aiohttp.ClientSession, i: int) -> tuple[dict[str, str], str]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": "bench-password", "full_name": f"Bench {i}"}
    async with session.post(f"{GATEWAY}/users/register", json=body) as r:
        assert r.status == 201, await r.text()
    login = {"email": email, "password": "bench-password"}
    async with session.post(f"{GATEWAY}/users/login", json=login) as r:
        token = (await r.json())["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    async with session.post(f"{GATEWAY}/wallets/create", json={}, headers=auth) as r:
        wallet = (await r.json())["id"]
    deposit = {
        "type": "deposit",
        "destination_wallet_id": wallet,
        "amount": "100000.00",
        "card": CARD,
    }
    async with session.post(f"{GATEWAY}/transactions/create", json=deposit, headers=auth) as r:
        assert r.status == 201, await r.text()
    return auth, wallet


async def run_load(
    users: int, clients: int, seconds: float, pids: dict[str, int]
) -> tuple[dict[str, float], dict[str, float], float]:
    """Returns the figures, each process's CPU seconds and the machine's busy CPU seconds
    during the load phase (after the setup of users and wallets)."""
    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        people = [await setup_user(session, i) for i in range(users)]
        latencies: list[float] = []
        codes: dict[int, int] = {}
        deadline = time.monotonic() + seconds
        rng = random.Random(7)

        async def client() -> None:
            while time.monotonic() < deadline:
                (auth, src), (_, dst) = rng.sample(people, 2)
                body = {
                    "type": "transfer",
                    "source_wallet_id": src,
                    "destination_wallet_id": dst,
                    "amount": "1.00",
                }
                start = time.perf_counter()
                async with session.post(
                    f"{GATEWAY}/transactions/create", json=body, headers=auth
                ) as r:
                    await r.read()
                    codes[r.status] = codes.get(r.status, 0) + 1
                latencies.append(time.perf_counter() - start)

        cpu_before = {s: cpu_seconds(pid) for s, pid in pids.items()}
        busy_before = machine_busy_seconds()
        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.monotonic() - started
        busy = machine_busy_seconds() - busy_before
        cpu = {s: cpu_seconds(pid) - cpu_before[s] for s, pid in pids.items()}
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return (
        {
            "elapsed": elapsed,
            "requests": len(latencies),
            "ok": codes.get(201, 0),
            "rps": len(latencies) / elapsed,
            "p50_ms": q[49] * 1000,
            "p95_ms": q[94] * 1000,
            "p99_ms": q[98] * 1000,
        },
        cpu,
        busy,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    base = infra_env(os.environ)
    db_name = f"paysys_bench_{uuid.uuid4().hex[:8]}"

    async def create_db() -> None:
        conn = await asyncpg.connect(base["DATABASE_URL"].replace("+asyncpg", ""))
        await conn.execute(f'CREATE DATABASE "{db_name}"')
        await conn.close()

    asyncio.run(create_db())
    env = {
        **os.environ,
        **base,
        "PAYSYS_ENV": "test",
        "PAYSYS_MONGODB_DATABASE": db_name,
        "DATABASE_URL": base["DATABASE_URL"].rsplit("/", 1)[0] + "/" + db_name,
        "PAYSYS_RATE_LIMIT_USER": "1000000",
        "PAYSYS_RATE_LIMIT_LOGIN": "1000000",
        "PAYSYS_RATE_LIMIT_REGISTER": "1000000",
        "PAYSYS_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }
    env.update({f"PAYSYS_{s.upper()}_PORT": str(p) for s, p in PORTS.items()})
    logs = ROOT / ".run" / "bench-logs"
    procs = {s: spawn_service(s, env, logs) for s in SERVICES}
    try:
        wait_ready({s: f"http://127.0.0.1:{p}" for s, p in PORTS.items()}, 120, procs)
        idle = {s: rss_mib(p.pid) for s, p in procs.items()}
        pids = {s: p.pid for s, p in procs.items()}
        result, cpu, busy = asyncio.run(run_load(args.users, args.clients, args.seconds, pids))
        loaded = {s: rss_mib(p.pid) for s, p in procs.items()}
    finally:
        stop_processes(procs)

    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/load.py`); figures from the last run.",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}; all six processes, PostgreSQL, Redis, Kafka and "
        "FerretDB on the same machine, one process per service.",
        "",
        f"## Transfers through the gateway ({args.clients} concurrent clients, "
        f"{args.users} users, {args.seconds:.0f} s)",
        "",
        "Each transfer: gateway (JWT + session + rate limit) -> transactions (idempotency, "
        "two wallet reads, PENDING row) -> wallets debit -> wallets credit -> terminal state "
        "+ outbox event + MongoDB log.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| transfers completed | {int(result['ok'])} of {int(result['requests'])} |",
        f"| throughput | {result['rps']:.1f} transfers/s |",
        f"| latency p50 | {result['p50_ms']:.1f} ms |",
        f"| latency p95 | {result['p95_ms']:.1f} ms |",
        f"| latency p99 | {result['p99_ms']:.1f} ms |",
        "",
        "## Where the CPU goes",
        "",
        f"During the load phase the machine was busy {busy:.0f} of the "
        f"{(os.cpu_count() or 1) * result['elapsed']:.0f} CPU-seconds its cores had: the "
        "load is CPU-bound. What the six processes do not use goes to PostgreSQL, Kafka, "
        "FerretDB, Redis, the SMTP sink and the load generator, all on the same machine.",
        "",
        "| process | CPU seconds | CPU ms per transfer |",
        "|---|---|---|",
        *[f"| {s} | {cpu[s]:.1f} | {cpu[s] * 1000 / max(result['ok'], 1):.1f} |" for s in SERVICES],
        "",
        "## Resident memory per process (MiB)",
        "",
        "| process | idle | after the load |",
        "|---|---|---|",
        *[f"| {s} | {idle[s]:.0f} | {loaded[s]:.0f} |" for s in SERVICES],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (ROOT / "docs" / "benchmarks.md").write_text(text)


if __name__ == "__main__":
    main()
