"""The `paysys` command, what a deployment runs:

paysys serve SERVICE     one process (uvicorn with uvloop and httptools)
paysys relay SERVICE     its outbox and records relays, apart (PAYSYS_RELAYS=apart)
paysys migrate [SERVICE]  applies the migrations (all services by default)
paysys rotate-keys SVC   re-seals personal data under the current key

The local stack (`make run`: `python -m paysys_dev run|stop`) is developer tooling, in
its own package (src/paysys_dev).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from paysys.kit.settings import RELAYED, SERVICE_PORTS

SERVICES = tuple(SERVICE_PORTS)


def serve(service: str, standby: bool = False, app: str | None = None) -> None:
    import importlib

    import uvicorn

    from paysys.kit.settings import KitSettings

    if standby:
        # A warm spare: everything imported (most of a start's 2-3 s), then it waits for
        # its supervisor's word to serve. It exits with its supervisor (EOF on stdin).
        importlib.import_module((app or f"paysys.{service}.app").split(":")[0])
        importlib.import_module("uvloop")
        importlib.import_module("uvicorn.protocols.http.httptools_impl")
        if not sys.stdin.readline():
            return

    settings = KitSettings()
    config = server_config(service, settings, app=app)
    server = uvicorn.Server(config)
    if settings.metrics_port is None:
        server.run()
        return
    # The operations port: /metrics, /health and /ready there, and only there
    # (kit.app.OperationsPort), for Prometheus and the kubelet; the API on the other.
    import socket

    server.run(
        sockets=[
            socket.create_server((config.host, p), reuse_port=False, backlog=config.backlog)
            for p in (config.port, settings.metrics_port)
        ]
    )


def relay(service: str) -> None:
    """A service's outbox and records relays in a process of their own (kit.relays),
    with /health, /ready and /metrics on one port."""
    import uvicorn

    from paysys.kit.relays import create_app
    from paysys.kit.settings import KitSettings

    settings = KitSettings()
    port = settings.relay_port_of(service)
    uvicorn.Server(server_config(service, settings, create_app(service, settings), port)).run()


def server_config(service: str, settings: Any, app: Any = None, port: int | None = None) -> Any:
    """uvicorn's configuration for one process: `app` an import path of a factory (the
    service's by default) or an ASGI app."""
    import uvicorn

    from paysys.kit.server import bounded_protocol

    host = settings.bind_host_of(service)
    return uvicorn.Config(
        app or f"paysys.{service}.app:create_app",
        factory=app is None or isinstance(app, str),
        host=host,
        port=port or settings.listen_port or settings.port_of(service),
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
        loop="uvloop",
        http=bounded_protocol(settings.http_max_head_bytes, settings.http_head_timeout_seconds),
        # An idle kept-alive connection is closed by its client first (its pool lets go
        # of it at PAYSYS_HTTP_CLIENT_IDLE_SECONDS): a server closing it first races the
        # client's next request on it, which then fails unsent-or-not (a 503 for a POST).
        timeout_keep_alive=settings.http_idle_seconds,
        # The client address is the gateway's to derive (gateway.proxy.client_ip), from
        # the socket peer and the trusted hops only: uvicorn must not rewrite it from
        # X-Forwarded-For, which it would believe from any local peer.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
    )


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
    specs: list[tuple[str, str, tuple[tuple[str, str], ...]]]
    if service == "users":
        from paysys.users.models import SEALED
        from paysys.users.settings import UsersSettings

        settings, specs = UsersSettings(), [SEALED]
    else:
        from paysys.notifications.models import SEALED as RECIPIENTS
        from paysys.notifications.models import SEALED_SECRETS
        from paysys.notifications.settings import NotificationsSettings

        settings, specs = NotificationsSettings(), [RECIPIENTS, SEALED_SECRETS]
    cipher = settings.cipher

    async def reseal(db: Database, table: str, key: str, fields: Any) -> int:
        columns = ", ".join(column for column, _ in fields)
        pick = (
            f"SELECT {key} AS row_key, key_id, {columns} FROM {table} "  # noqa: S608 - constants
            "WHERE key_id <> $1 LIMIT 200 FOR UPDATE SKIP LOCKED"
        )
        sets = ", ".join(f"{column} = ${i + 3}" for i, (column, _) in enumerate(fields))
        write = f"UPDATE {table} SET key_id = $2, {sets} WHERE {key} = $1"  # noqa: S608
        done = 0
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

    async def run() -> int:
        db = Database(settings.database_url, service, pool_size=1)
        try:
            return sum([await reseal(db, *spec) for spec in specs])
        finally:
            await db.dispose()

    count = asyncio.run(run())
    print(f"{service}: {count} rows re-sealed under key {cipher.current}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="paysys")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve_p = sub.add_parser("serve")
    serve_p.add_argument("service", choices=SERVICES)
    serve_p.add_argument("--standby", action="store_true", help="import, then wait for a line")
    serve_p.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        help="another app factory for the service (tests build theirs with their fakes)",
    )
    relay_p = sub.add_parser("relay")
    relay_p.add_argument("service", choices=sorted(RELAYED))
    migrate_p = sub.add_parser("migrate")
    migrate_p.add_argument("services", nargs="*", help=f"any of {', '.join(MIGRATED)}; all if none")
    rotate_p = sub.add_parser("rotate-keys")
    rotate_p.add_argument("service", choices=("users", "notifications"))
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.service, args.standby, args.app)
    elif args.cmd == "relay":
        relay(args.service)
    elif args.cmd == "migrate":
        unknown = set(args.services) - set(MIGRATED)
        if unknown:
            parser.error(f"no migrations for {', '.join(sorted(unknown))}")
        sys.exit(migrate_services(args.services))
    else:
        sys.exit(rotate_keys(args.service))


if __name__ == "__main__":
    main()
