"""Async SQLAlchemy engine per service schema, and the unit of work: the only committer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util.concurrency import greenlet_spawn

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("closed by the server")  # the pool connects anew


class RawTransaction:
    """The connection of `Database.raw_transaction`, and the way to give its work up."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True


class Database:
    def __init__(self, url: str, schema: str, pool_size: int = 10, pooler: str = "none") -> None:
        """`pooler`: "transaction" behind PgBouncer in transaction pooling (docs/scaling.md):
        no search_path at connect (a startup parameter PgBouncer refuses; the pooler's
        database entry or the role sets it) and prepared statements that never outlive
        a transaction (asyncpg's cache off, a unique name each, as SQLAlchemy's
        asyncpg dialect documents), since consecutive transactions of one client
        connection may run on different server connections."""
        self.schema = schema
        settings: dict[str, str] = {"application_name": f"paysys-{schema}"}
        connect_args: dict[str, Any] = {"timeout": 5, "command_timeout": 30}
        if pooler == "transaction":
            connect_args.update(
                statement_cache_size=0,
                prepared_statement_cache_size=0,
                prepared_statement_name_func=lambda: f"__asyncpg_{uuid.uuid4()}__",
            )
        else:
            settings["search_path"] = schema
        connect_args["server_settings"] = settings
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=10,  # a peak's extra connections, closed after it
            pool_pre_ping=False,  # a stale connection fails one unit of work, then is replaced
            pool_recycle=1800,
            pool_timeout=10,
            hide_parameters=True,  # no emails or other values in logged SQL errors
            connect_args=connect_args,
        )
        # A connection PostgreSQL closed (a restart, a failover, an idle timeout) is
        # known closed to asyncpg as soon as the event loop read the server's goodbye:
        # it is left in the pool, not handed out. Without a round trip (pool_pre_ping's
        # SELECT 1 per checkout, several per payment): before, each dead connection
        # failed one request, found dead only when used (e2e/test_sessions.py).
        event.listen(self.engine.sync_engine, "checkout", _refuse_closed)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._after_commit: dict[str, list[Callable[[], None]]] = {}

    def on_commit(self, table: str, hook: Callable[[], None]) -> None:
        """Called after a commit that wrote to `table` (marked by kit.outbox): the
        outbox relay's nudge. Other commits wake nobody."""
        self._after_commit.setdefault(table, []).append(hook)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self)

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[Any]:
        """The asyncpg connection under a pooled connection, for the money path: no ORM,
        prepared statements (asyncpg keeps them per connection), one round trip per
        statement. Nothing is open on it: one statement commits alone (a statement with
        data-modifying CTEs is atomic), `conn.transaction()` spans several. Outbox
        writes on it must call `written` after the commit to wake their relay."""
        # Straight from the pool, without a SQLAlchemy Connection around it: half the
        # cost of engine.connect() (it runs several times per payment).
        fairy = await self.engine.raw_connection()
        try:
            yield fairy.driver_connection
        finally:
            await asyncio.shield(greenlet_spawn(fairy.close))

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Any]:
        """A raw connection in a read-only REPEATABLE READ transaction: every statement
        in the block sees the same committed state (a statement's opening balance, its
        entries and its closing balance agree), and a cursor can stream from it."""
        async with self.raw() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn

    @asynccontextmanager
    async def raw_transaction(self) -> AsyncIterator[RawTransaction]:
        """One database transaction on a raw connection, owned here as `uow` owns its
        session's: committed when the block ends, rolled back if it raises or if the
        block called `abandon()` (a step declined: nothing of it is kept)."""
        async with self.raw() as conn:
            tx = RawTransaction(conn)
            transaction = conn.transaction()
            await transaction.start()
            try:
                yield tx
            except BaseException:
                await transaction.rollback()
                raise
            if tx.abandoned:
                await transaction.rollback()
            else:
                await transaction.commit()

    def written(self, *tables: str) -> None:
        """After a raw commit that wrote these outbox tables: wake their relays."""
        for table in tables:
            for hook in self._after_commit.get(table, ()):
                hook()

    async def dispose(self) -> None:
        await self.engine.dispose()


class UnitOfWork:
    """`async with db.uow() as session:` commits on success, rolls back on error.

    Services and repositories receive the session and only flush; committing here,
    once, is what keeps a balance change, its ledger row and its outbox event together.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.session: AsyncSession = db.sessionmaker()

    async def __aenter__(self) -> AsyncSession:
        return self.session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                written = self.session.info.pop("outbox_tables", ())
                await self.session.commit()
                for table in written:
                    for hook in self.db._after_commit.get(table, ()):
                        hook()
            else:
                await self.session.rollback()
        finally:
            await asyncio.shield(self.session.close())
