"""The `paysys` command: serve one process, or run the whole local stack in the foreground.

paysys serve SERVICE     one process (uvicorn with uvloop and httptools)
paysys run               infrastructure + all six processes; Ctrl-C stops everything
paysys stop              stops a running `paysys run` from another shell
paysys migrate [SERVICE]  applies the migrations (all services by default)
paysys rotate-keys SVC   re-seals personal data under the current key
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

from paysys.fleet import Fleet
from paysys.kit.settings import SERVICE_PORTS

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "infra" / "stack.sh"
SERVICES = tuple(SERVICE_PORTS)


def run_dir() -> Path:
    return Path(os.environ.get("PAYSYS_RUN_DIR", ROOT / ".run"))


def serve(service: str, standby: bool = False) -> None:
    import importlib

    import uvicorn

    from paysys.kit.server import bounded_protocol
    from paysys.kit.settings import KitSettings

    if standby:
        # A warm spare: everything imported (most of a start's 2-3 s), then it waits for
        # its supervisor's word to serve. It exits with its supervisor (EOF on stdin).
        importlib.import_module(f"paysys.{service}.app")
        importlib.import_module("uvloop")
        importlib.import_module("uvicorn.protocols.http.httptools_impl")
        if not sys.stdin.readline():
            return

    settings = KitSettings()
    uvicorn.run(
        f"paysys.{service}.app:create_app",
        factory=True,
        host=settings.bind_host_of(service),
        port=settings.listen_port or settings.port_of(service),
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
        loop="uvloop",
        http=bounded_protocol(settings.http_max_head_bytes, settings.http_head_timeout_seconds),
        # The client address is the gateway's to derive (gateway.proxy.client_ip), from
        # the socket peer and the trusted hops only: uvicorn must not rewrite it from
        # X-Forwarded-For, which it would believe from any local peer.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
    )


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


# The services that keep tables, and the settings class each one's migrations see.
MIGRATED = {
    "users": "paysys.users.settings:UsersSettings",
    "wallets": "paysys.kit.settings:KitSettings",
    "transactions": "paysys.transactions.settings:TransactionsSettings",
    "payment_gateway": "paysys.payment_gateway.settings:PaymentGatewaySettings",
    "notifications": "paysys.notifications.settings:NotificationsSettings",
}


def migrate_services(services: list[str]) -> int:
    """Applies the migrations of each service (all by default), e.g. as a deployment's
    one migration Job before any new replica starts."""
    import asyncio
    import importlib

    from paysys.kit import migrate

    for service in services or list(MIGRATED):
        module, _, name = MIGRATED[service].partition(":")
        settings = getattr(importlib.import_module(module), name)()
        asyncio.run(migrate.upgrade(service, settings.database_url, settings))
        print(f"{service}: migrated", flush=True)
    return 0


def rotate_keys(service: str) -> int:
    """Re-seals a service's personal data under its current key (PAYSYS_DATA_KEY_ID),
    in small batches, while the system runs. Every instance must know both keys first."""
    import asyncio

    from paysys.kit.db import Database
    from paysys.kit.settings import DataKeySettings

    settings: DataKeySettings
    if service == "users":
        from paysys.users.models import SEALED
        from paysys.users.settings import UsersSettings

        settings = UsersSettings()
    else:
        from paysys.notifications.models import SEALED
        from paysys.notifications.settings import NotificationsSettings

        settings = NotificationsSettings()
    cipher = settings.cipher
    table, key, fields = SEALED
    columns = ", ".join(column for column, _ in fields)
    pick = (
        f"SELECT {key} AS row_key, key_id, {columns} FROM {table} "  # noqa: S608 - constants
        "WHERE key_id <> $1 LIMIT 200 FOR UPDATE SKIP LOCKED"
    )
    sets = ", ".join(f"{column} = ${i + 3}" for i, (column, _) in enumerate(fields))
    write = f"UPDATE {table} SET key_id = $2, {sets} WHERE {key} = $1"  # noqa: S608

    async def run() -> int:
        db = Database(settings.database_url, service, pool_size=1)
        done = 0
        try:
            while True:
                async with db.raw() as conn, conn.transaction():
                    rows = await conn.fetch(pick, cipher.current)
                    for row in rows:
                        resealed = [
                            cipher.seal(
                                cipher.open(row[column], row["key_id"], f"{ctx}:{row['row_key']}"),
                                f"{ctx}:{row['row_key']}",
                            )
                            for column, ctx in fields
                        ]
                        await conn.execute(write, row["row_key"], cipher.current, *resealed)
                done += len(rows)
                if not rows:
                    return done
        finally:
            await db.dispose()

    count = asyncio.run(run())
    print(f"{service}: {count} rows re-sealed under key {cipher.current}")
    return 0


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
    parser = argparse.ArgumentParser(prog="paysys")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve_p = sub.add_parser("serve")
    serve_p.add_argument("service", choices=SERVICES)
    serve_p.add_argument("--standby", action="store_true", help="import, then wait for a line")
    sub.add_parser("run")
    migrate_p = sub.add_parser("migrate")
    migrate_p.add_argument("services", nargs="*", help=f"any of {', '.join(MIGRATED)}; all if none")
    sub.add_parser("stop")
    rotate_p = sub.add_parser("rotate-keys")
    rotate_p.add_argument("service", choices=("users", "notifications"))
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.service, args.standby)
    elif args.cmd == "migrate":
        unknown = set(args.services) - set(MIGRATED)
        if unknown:
            parser.error(f"no migrations for {', '.join(sorted(unknown))}")
        sys.exit(migrate_services(args.services))
    elif args.cmd == "rotate-keys":
        sys.exit(rotate_keys(args.service))
    elif args.cmd == "run":
        sys.exit(run_stack())
    else:
        sys.exit(stop_stack())


if __name__ == "__main__":
    main()
