"""The recovery worker: resumes sagas whose runner died or lost a dependency (their
lease ran out), voids the authorizations that expired uncaptured, reports in-flight
counts, and drops expired idempotency keys. Several instances can run: the lease is
claimed with a conditional UPDATE, so each saga has one runner at a time."""

from __future__ import annotations

import asyncio

import structlog

from paysys.kit.metrics import IN_FLIGHT_TRANSACTIONS, STUCK_TRANSACTIONS
from paysys.transactions import repository
from paysys.transactions.saga import Saga

log = structlog.get_logger()


async def recovery_loop(saga: Saga) -> None:
    db = saga.db
    ticks = 0
    while True:
        try:
            async with db.uow() as session:
                stale = await repository.stale_in_flight(session)
            for tx_id in stale:
                await saga.recover(tx_id)
            async with db.uow() as session:
                expired = await repository.expired_authorizations(session)
            for tx_id in expired:
                await saga.expire(tx_id)
            async with db.uow() as session:
                for status, n in (await repository.in_flight_counts(session)).items():
                    IN_FLIGHT_TRANSACTIONS.labels(status).set(n)
                STUCK_TRANSACTIONS.set(
                    await repository.stuck_count(session, saga.settings.recovery_window_seconds)
                )
                if ticks % 300 == 0:
                    await repository.purge_expired_keys(session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("recovery_tick_failed", error=str(exc)[:300])
        ticks += 1
        await asyncio.sleep(saga.settings.recovery_interval_seconds)
