"""Limit windows at their boundaries (issue 24), against the real wallets schema, with
the clock given to the code instead of waited for: a UTC day and a UTC month start
afresh at midnight; a hold counted in one window gives back only to that window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from paysys.kit.db import Database
from paysys.kit.outbox import Outbox
from paysys.wallets import service
from paysys.wallets.models import outbox as wallets_outbox
from tests.conftest import Stack
from tests.integration.test_transfer_outcome import two_wallets

OUTBOX = Outbox(wallets_outbox, "wallets")
# per transaction, daily, monthly (minor units) for personal USD wallets here
MAXIMUMS = {"personal": {"USD": (100, 10, 15)}}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def moved(db: Database, src: uuid.UUID, dst: uuid.UUID, amount: int, now: datetime) -> str:
    applied = await service.move_batch(
        db, OUTBOX, [service.Move(uuid.uuid4(), src, dst, amount, "USD")], MAXIMUMS, now
    )
    (outcome,) = applied.outcomes
    return outcome.code if isinstance(outcome, service.Refused) else type(outcome).__name__


async def test_days_and_months_start_afresh_at_midnight_utc(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.infra.dsn)
    db = Database(stack.infra.database_url, "wallets", pool_size=2)
    try:
        a, b = await two_wallets(conn, 1000)
        assert await moved(db, a, b, 10, at("2027-01-31T23:59:59.999999")) == "Moved"
        # The day is used up until its last microsecond ...
        assert await moved(db, a, b, 1, at("2027-01-31T23:59:59.999999")) == "LIMIT_EXCEEDED"
        # ... and a new one (a new month too) starts at midnight.
        assert await moved(db, a, b, 10, at("2027-02-01T00:00:00")) == "Moved"
        assert await moved(db, a, b, 1, at("2027-02-01T12:00:00")) == "LIMIT_EXCEEDED"
        # The next day: the month (15) is what stops it now, not the day (10).
        assert await moved(db, a, b, 6, at("2027-02-02T00:00:00")) == "LIMIT_EXCEEDED"
        assert await moved(db, a, b, 5, at("2027-02-02T00:00:00")) == "Moved"
        assert await moved(db, a, b, 1, at("2027-02-28T23:59:59")) == "LIMIT_EXCEEDED"
        assert await moved(db, a, b, 10, at("2027-03-01T00:00:00")) == "Moved"
        # A refund's move counts for nothing.
        back = service.Move(uuid.uuid4(), a, b, 50, "USD", kind="refund")
        applied = await service.move_batch(db, OUTBOX, [back], MAXIMUMS, at("2027-03-01T00:00:01"))
        assert isinstance(applied.outcomes[0], service.Moved)
        row = await conn.fetchrow(
            "SELECT spent_day, spent_today, spent_month, spent_this_month"
            " FROM wallets.wallets WHERE id = $1",
            a,
        )
        assert tuple(row) == (
            at("2027-03-01T00:00:00").date(),
            10,
            at("2027-03-01T00:00:00").date(),
            10,
        )
        # Per transaction: above it, refused whatever the windows.
        c, d = await two_wallets(conn, 1000)
        big = {"personal": {"USD": (5, 100, 100)}}
        applied = await service.move_batch(
            db, OUTBOX, [service.Move(uuid.uuid4(), c, d, 6, "USD")], big, at("2027-03-01T00:00:00")
        )
        assert isinstance(applied.outcomes[0], service.Refused)
    finally:
        await db.dispose()
        await conn.close()


async def test_a_hold_gives_back_only_to_the_windows_it_was_counted_in(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.infra.dsn)
    db = Database(stack.infra.database_url, "wallets", pool_size=2)
    try:
        a, b = await two_wallets(conn, 1000)
        day1 = at("2027-04-30T22:00:00")
        tx = uuid.uuid4()
        held = await service.hold(db, OUTBOX, tx, a, b, 8, "USD", MAXIMUMS, None, day1)
        assert isinstance(held, service.Held)
        # the day has 2 left
        refused = await service.hold(db, OUTBOX, uuid.uuid4(), a, b, 3, "USD", MAXIMUMS, None, day1)
        assert isinstance(refused, service.Refused) and refused.code == "LIMIT_EXCEEDED"
        # The next day (a new month too), 10 leaves; then the hold of the day before is
        # released: it must not give back to today's window.
        assert await moved(db, a, b, 10, day1 + timedelta(hours=3)) == "Moved"
        async with db.uow() as session:
            assert isinstance(await service.release(session, OUTBOX, tx), service.Released)
        row = await conn.fetchrow(
            "SELECT spent_today, spent_this_month FROM wallets.wallets WHERE id = $1", a
        )
        assert tuple(row) == (10, 10)
        assert await moved(db, a, b, 1, day1 + timedelta(hours=4)) == "LIMIT_EXCEEDED"
    finally:
        await db.dispose()
        await conn.close()
