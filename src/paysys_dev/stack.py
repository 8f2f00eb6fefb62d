"""The local stack, for developers (`make run`, tests, bench, chaos): the infrastructure
through infra/stack.sh, and the six processes (paysys_dev.fleet). Not part of the
product: a deployment runs `paysys serve` (paysys.cli) under its own supervisor.

python -m paysys_dev run    infrastructure + all six processes; Ctrl-C stops everything
python -m paysys_dev stop   stops a running `run` from another shell
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from paysys.kit.settings import SERVICE_PORTS
from paysys_dev.fleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "infra" / "stack.sh"
SERVICES = tuple(SERVICE_PORTS)


def run_dir() -> Path:
    return Path(os.environ.get("PAYSYS_RUN_DIR", ROOT / ".run"))


def infra_env(env: Mapping[str, str]) -> dict[str, str]:
    """The URLs of the infrastructure (local or external), as `infra/stack.sh env` says."""
    out = subprocess.run(
        ["bash", str(STACK), "env"], env=dict(env), capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def service_port(service: str, env: Mapping[str, str]) -> int:
    return int(env.get(f"PAYSYS_{service.upper()}_PORT", SERVICE_PORTS[service]))


def http_status(url: str, timeout: float = 2.0, ca_file: str | None = None) -> int:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return 0  # not answering (yet), or not answering HTTP


def wait_ready(
    urls: Mapping[str, str],
    timeout: float,
    procs: Mapping[str, subprocess.Popen[bytes]] | None = None,
    ca_file: str | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(urls)
    while pending:
        for name, url in list(pending.items()):
            if http_status(url + "/ready", ca_file=ca_file) == 200:
                del pending[name]
            elif procs and name in procs and procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {procs[name].returncode}; see its log")
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout:.0f} s: {', '.join(sorted(pending))}")
        time.sleep(0.3)


def endpoints(env: Mapping[str, str], infra: Mapping[str, str]) -> dict[str, str]:
    table = {s: f"http://127.0.0.1:{service_port(s, env)}" for s in SERVICES}
    kafka = infra["KAFKA_BOOTSTRAP_SERVERS"]
    table.update(
        postgres=infra["DATABASE_URL"].replace("+asyncpg", ""),
        redis=infra["REDIS_URL"],
        kafka=kafka,
        mongodb=infra["MONGODB_URL"],
        prometheus=infra["PROMETHEUS_URL"],
        alertmanager=infra["ALERTMANAGER_URL"],
        smtp=f"{infra['SMTP_HOST']}:{infra['SMTP_PORT']}",
        inbox=infra["MAIL_INBOX"],
    )
    return table


def run_stack() -> int:
    started = time.monotonic()
    rdir = run_dir()
    rdir.mkdir(parents=True, exist_ok=True)
    pidfile = rdir / "supervisor.pid"
    pidfile.write_text(str(os.getpid()))
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    fleet: Fleet | None = None
    env = dict(os.environ)
    # `make run` is the laptop: local mode (development secrets allowed) unless told
    # otherwise. A process started any other way defaults to production.
    env.setdefault("PAYSYS_ENV", "local")
    try:
        subprocess.run(["bash", str(STACK), "up"], env=env, check=True)
        infra = infra_env(env)
        env.update(
            {
                k: v
                for k, v in infra.items()
                if k
                in (
                    "DATABASE_URL",
                    "REDIS_URL",
                    "KAFKA_BOOTSTRAP_SERVERS",
                    "MONGODB_URL",
                    "SMTP_HOST",
                    "SMTP_PORT",
                )
            }
        )
        envs = {service: env for service in SERVICES}
        ca_file = None
        if env.get("PAYSYS_LOCAL_TLS") == "1":
            # `make run TLS=1`: the gateway serves HTTPS with a certificate from a local
            # CA made (once) under .run/tls; clients trust .run/tls/ca.pem.
            from paysys.kit.tls import local_tls

            made = local_tls(rdir / "tls")
            ca_file = str(made.ca_file)
            envs["gateway"] = {
                **env,
                "PAYSYS_TLS_CERTFILE": str(made.cert_file),
                "PAYSYS_TLS_KEYFILE": str(made.key_file),
            }
        instances = int(env.get("PAYSYS_INSTANCES", "1"))
        if instances > 1 and ca_file:
            raise RuntimeError("TLS=1 serves one gateway; PAYSYS_INSTANCES>1 is plain HTTP")
        fleet = Fleet(
            envs,
            {s: service_port(s, env) for s in SERVICES},
            rdir / "logs",
            rdir,
            instances=instances,
            spares=env.get("PAYSYS_WARM_SPARES", "1") == "1",
        )
        fleet.start()
        table = endpoints(env, infra)
        if ca_file:
            table["gateway"] = table["gateway"].replace("http://", "https://")
            table["tls_ca"] = ca_file
        wait_ready(fleet.ready_urls(), timeout=300, procs=fleet.procs, ca_file=ca_file)
        wait_ready({s: table[s] for s in SERVICES}, timeout=60, ca_file=ca_file)
        (rdir / "endpoints.json").write_text(json.dumps(table, indent=2) + "\n")
        width = max(map(len, table))
        print(f"\npaysys is up in {time.monotonic() - started:.1f} s. Gateway: {table['gateway']}")
        if instances > 1:
            print(f"  {instances} instances of each service, behind HAProxy ({rdir}/haproxy.cfg)")
        for name, where in table.items():
            print(f"  {name:<{width}}  {where}")
        print("Logs in .run/logs/. Ctrl-C (or `make stop`) stops everything.\n", flush=True)
        fleet.warm_spares()
        while not stopping:
            for name in fleet.replace_dead():
                print(f"{name} exited; restarted", file=sys.stderr)
            time.sleep(0.1)
        return 0
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        print(f"paysys run failed: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping paysys ...", file=sys.stderr)
        if fleet is not None:
            fleet.stop()
        subprocess.run(["bash", str(STACK), "down"], env=env, check=False)
        (rdir / "endpoints.json").unlink(missing_ok=True)
        pidfile.unlink(missing_ok=True)
        print("stopped.", file=sys.stderr)


def stop_stack() -> int:
    pidfile = run_dir() / "supervisor.pid"
    if not pidfile.exists():
        print("paysys is not running (no .run/supervisor.pid)")
        subprocess.run(["bash", str(STACK), "down"], check=False)
        return 0
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return 0
    for _ in range(600):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        time.sleep(0.1)
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m paysys_dev")
    parser.add_argument("cmd", choices=("run", "stop"))
    args = parser.parse_args()
    sys.exit(run_stack() if args.cmd == "run" else stop_stack())
