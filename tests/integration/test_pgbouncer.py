"""The services' database access behind PgBouncer in transaction pooling (issue 25.7), the
Debian package against the real PostgreSQL: with PAYSYS_DB_POOLER=transaction, wallets'
money path (move_batch, raw prepared statements) and the ORM work while many client
connections share a few server connections; without it, PgBouncer refuses to connect."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select

from paysys.kit.db import Database
from paysys.kit.settings import KitSettings
from paysys.wallets import service
from paysys.wallets.models import Wallet
from tests.conftest import Infra, Stack, free_port
from tests.integration.test_move_batch import OUTBOX, balances, move, wallets
from tests.support.processes import wait_listening

SERVER_CONNECTIONS = 3  # what PgBouncer opens to PostgreSQL, shared by every client


@pytest.fixture(scope="module")
def pgbouncer(infra: Infra) -> Iterator[str]:
    """A PgBouncer of this module's own; the URL of its `wallets` database entry, which
    sets wallets' search_path on each server connection it opens."""
    binary = shutil.which("pgbouncer")
    if binary is None:
        pytest.fail("needs pgbouncer (Debian's): make test installs it")
    pg = infra.dsn.split("@", 1)[1]  # 127.0.0.1:15432/<db>
    host, _, rest = pg.partition(":")
    pg_port, _, db = rest.partition("/")
    port = free_port()
    # PgBouncer will not run as root: it runs as postgres, in a folder that user can use.
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    folder.chmod(0o777)
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"wallets = host={host} port={pg_port} dbname={db} user=postgres"
        " connect_query='SET search_path TO wallets'\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder}/users.txt\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 200\nignore_startup_parameters = extra_float_digits\n"
        f"logfile = {folder}/pgbouncer.log\npidfile = {folder}/pgbouncer.pid\n"
    )
    for f in folder.iterdir():
        f.chmod(0o666)
    user = [] if os.geteuid() else ["-u", "postgres"]
    proc = subprocess.Popen([binary, *user, str(folder / "pgbouncer.ini")])
    log = folder / "pgbouncer.log"
    try:
        wait_listening(
            port,
            proc,
            "pgbouncer",
            lambda: log.read_text(errors="replace")[-2000:] if log.exists() else "",
        )
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/wallets"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def conn(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(stack.infra.dsn)  # the stack has migrated the schemas
    try:
        yield c
    finally:
        await c.close()


async def test_without_the_pooler_setting_pgbouncer_refuses_the_connection(
    pgbouncer: str,
) -> None:
    db = Database(pgbouncer, "wallets", pool_size=1)
    try:
        with pytest.raises(Exception, match="search_path"):
            async with db.uow() as session:
                await session.execute(select(1))
    finally:
        await db.dispose()


async def test_the_money_path_and_the_orm_work_behind_transaction_pooling(
    pgbouncer: str, conn: asyncpg.Connection
) -> None:
    # Two pools of four connections (two wallets instances), eight callers: far more
    # client connections than PgBouncer's three to PostgreSQL, so consecutive
    # statements of a client land on different server connections.
    pools = [Database(pgbouncer, "wallets", pool_size=4, pooler="transaction") for _ in range(2)]
    hot = await wallets(conn, *[1_000] * 6)
    rng = random.Random(25)
    deadline = time.monotonic() + 5
    done = 0

    async def caller(db: Database) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            batch = [move(*rng.sample(hot, 2), rng.randint(1, 300)) for _ in range(5)]
            applied = await service.move_batch(db, OUTBOX, batch)
            assert len(applied.outcomes) == len(batch)
            done += len(batch)
            async with db.uow() as session:  # the ORM, its statements prepared too
                n = await session.scalar(
                    select(func.count()).select_from(Wallet).where(Wallet.id.in_(hot))
                )
            assert n == len(hot)

    try:
        await asyncio.gather(*(caller(db) for db in pools for _ in range(4)))
    finally:
        for db in pools:
            await db.dispose()
    assert sum(await balances(conn, hot)) == 6_000
    assert done > 40
    # every move once: each transaction id has its ledger legs at most once per wallet
    dupes = await conn.fetchval(
        "SELECT count(*) FROM (SELECT transaction_id, wallet_id FROM wallets.ledger_entries"
        " WHERE wallet_id = ANY($1::uuid[]) GROUP BY 1, 2 HAVING count(*) > 1) d",
        hot,
    )
    assert dupes == 0


def test_migrating_at_start_through_pgbouncer_is_refused() -> None:
    with pytest.raises(ValueError, match="MIGRATE_ON_START"):
        KitSettings.model_validate({"env": "test", "db_pooler": "transaction"})
    ok = KitSettings.model_validate(
        {"env": "test", "db_pooler": "transaction", "migrate_on_start": False}
    )
    assert ok.db_pooler == "transaction"
