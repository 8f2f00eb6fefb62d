"""Group commit (issue 21): transfers and payments that are ready to move at the same
moment go together. One task per process takes everything queued while the previous
group was in flight (a lone request at low load goes at once: no timer adds latency),
up to a cap, and pays per group, not per transfer:

- one statement that inserts the group's transactions, with their Idempotency-Keys;
- one call to wallets, which applies the moves in one database transaction, in order,
  each with its own outcome (and one more for the authorizations' holds, and one for the
  captures, if any, side by side);
- one statement that ends them: terminal states, events, records, stored answers.

A capture comes claimed (repository.claim_held: phase capturing, with its key): it ends
COMPLETED, or, refused by wallets (a wallet inactive), its authorization waits again as it
was (Saga.reopen) and its request gets CaptureRefused.

A bulk request (POST /transactions/batch) is one unit of a group, never split: its
items go in order, each seeing the balances the items before it left. A crash anywhere
leaves transactions in flight with their lease, which the recovery worker finishes (a
transaction born with a failure code ends FAILED without moving). A keyed request whose
transactions another runner ended first answers its key's answer, one answer per key."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from paysys.kit.events import utcnow
from paysys.transactions import repository
from paysys.transactions.clients import NOT_CAPTURABLE, OutcomeUnknown
from paysys.transactions.exceptions import OutcomePending, Replay
from paysys.transactions.models import Phase, Status, Transaction
from paysys.transactions.saga import CaptureRefused, Saga

log = structlog.get_logger()


class KeyTaken(Exception):
    """Another request holds the unit's Idempotency-Key: nothing of this unit was kept."""


@dataclass(frozen=True)
class Ended:
    """What a unit's request gets back: its transactions as they ended, in order, and
    the answer the group made and stored for its key (a bulk request's, a capture's),
    if it made one: the request answers with it instead of rendering it again."""

    txs: list[Transaction]
    answer: tuple[int, dict[str, Any]] | None = None


@dataclass
class Unit:
    """What one request hands to the group: its transactions, validated and not yet
    stored; per transaction, the failure code validation found (it ends FAILED, nothing
    moves); the request's key; for a bulk request, how its stored answer is made."""

    txs: list[Transaction]
    failures: list[str | None]
    key: repository.NewKey | None
    answer: Callable[[list[Transaction]], tuple[int, dict[str, Any]]] | None
    inserted: bool = False  # stored by the caller already (a refund, with its reservation)
    answered: tuple[int, dict[str, Any]] | None = None  # made by `answer`, to be stored
    future: asyncio.Future[Ended] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class GroupCommit:
    saga: Saga
    max_items: int = 1000
    _queue: deque[Unit] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def submit(
        self,
        txs: list[Transaction],
        failures: list[str | None],
        key: repository.NewKey | None,
        answer: Callable[[list[Transaction]], tuple[int, dict[str, Any]]] | None = None,
        inserted: bool = False,
    ) -> Ended:
        """The transactions ended (COMPLETED or FAILED), in order. Raises KeyTaken, or
        OutcomePending when wallets gave no answer (they are stored, in flight: the
        recovery worker finishes them)."""
        unit = Unit(txs, failures, key, answer, inserted)
        self._queue.append(unit)
        self._wake.set()
        # Shielded: a request that goes away (client gone) leaves its unit in the group.
        return await asyncio.shield(unit.future)

    async def run(self) -> None:
        """The group's one task: takes every unit queued, up to `max_items`
        transactions (a larger unit goes alone), applies them, and again."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                units = [self._queue.popleft()]
                size = len(units[0].txs)
                while self._queue and size + len(self._queue[0].txs) <= self.max_items:
                    size += len(self._queue[0].txs)
                    units.append(self._queue.popleft())
                try:
                    await self._apply(units)
                except Exception as exc:  # a database error: the units' requests fail
                    log.exception("group_commit_failed", units=len(units), size=size)
                    for unit in units:
                        if not unit.future.done():
                            unit.future.set_exception(exc)

    async def _apply(self, units: list[Unit]) -> None:
        saga = self.saga
        new = [unit for unit in units if not unit.inserted]
        txs = [tx for unit in new for tx in unit.txs]
        keyed = [unit.key is not None for unit in new for _ in unit.txs]
        keys = [unit.key for unit in new if unit.key is not None]
        created: set[uuid.UUID] = set()
        if txs:
            async with saga.db.raw() as conn:
                created = await repository.insert_many(conn, txs, keyed, keys)
        live = []
        for unit in units:
            # a unit is inserted whole or not at all
            if unit.inserted or unit.txs[0].id in created:
                live.append(unit)
            else:
                unit.future.set_exception(KeyTaken())
        going = [
            tx
            for unit in live
            for tx, fail in zip(unit.txs, unit.failures, strict=True)
            if fail is None
        ]
        # Authorizations (manual capture) hold their money, captures take it, the others
        # move it: a wallets call for each kind present, at the same time.
        captures = [tx for tx in going if tx.phase == Phase.CAPTURING]
        holds = [
            tx
            for tx in going
            if tx.authorization_expires_at is not None and tx.phase == Phase.STARTED
        ]
        moves = [tx for tx in going if tx.authorization_expires_at is None]
        codes: dict[uuid.UUID, str | None] = {}
        unknown: set[uuid.UUID] = set()  # in flight: no definite answer from wallets

        async def call(txs: list[Transaction], send: Any) -> None:
            if not txs:
                return
            try:
                codes.update(zip([tx.id for tx in txs], await send(txs), strict=True))
            except OutcomeUnknown as exc:
                # Stored and in flight: the recovery worker finishes them. Those refused
                # by validation still end now.
                log.warning("group_outcome_pending", size=len(txs), error=str(exc))
                unknown.update(tx.id for tx in txs)

        await asyncio.gather(
            call(moves, saga.clients.transfer_batch),
            call(holds, saga.clients.hold_batch),
            call(captures, saga.clients.capture_batch),
        )
        unknown.update(tx.id for tx in captures if codes.get(tx.id) == NOT_CAPTURABLE)
        now = utcnow()
        ended: list[Transaction] = []
        refused: dict[int, tuple[Transaction, str]] = {}  # captures refused, by unit
        for unit in live:
            for tx, fail in zip(unit.txs, unit.failures, strict=True):
                if fail is not None:
                    saga.end(tx, Status.FAILED, fail, "validate", fail, now)
                elif tx.id in unknown:
                    continue
                elif tx.phase == Phase.CAPTURING:
                    if (code := codes[tx.id]) is not None:
                        refused[id(unit)] = (tx, code)
                        continue
                    saga.end(tx, Status.COMPLETED, None, "capture", "ok", now)
                elif tx.authorization_expires_at is not None:
                    code = codes[tx.id]
                    status = Status.AUTHORIZED if code is None else Status.FAILED
                    saga.end(tx, status, code, "hold", code or "ok", now)
                else:
                    code = codes[tx.id]
                    status = Status.COMPLETED if code is None else Status.FAILED
                    saga.end(tx, status, code, "move", code or "ok", now)
                ended.append(tx)
        pending = {id(unit) for unit in live if any(tx.id in unknown for tx in unit.txs)}
        answers = []
        for unit in live:
            if unit.key is None or unit.answer is None:
                continue
            if id(unit) in pending or id(unit) in refused:
                continue
            unit.answered = unit.answer(unit.txs)
            answers.append(
                repository.Answer(unit.key.user_id, unit.key.key, *unit.answered, unit.txs[0].id)
            )
        final = await saga.commit_ends(ended, now, answers) if ended else {}
        for unit in live:
            if id(unit) in pending:
                unit.future.set_exception(_pending(unit))
            elif id(unit) in refused:
                tx, code = refused[id(unit)]
                keep = (unit.key.user_id, unit.key.key) if unit.key else None
                try:
                    await saga.reopen(tx, code, keep)
                except Exception as exc:  # the capture stays claimed: recovery retries it
                    log.exception("capture_reopen_failed", transaction_id=str(tx.id))
                    unit.future.set_exception(exc)
                else:
                    unit.future.set_exception(CaptureRefused(code))
            elif not unit.future.done():
                txs = [final[tx.id] for tx in unit.txs]
                if unit.key is not None and any(
                    done is not tx for done, tx in zip(txs, unit.txs, strict=True)
                ):
                    # Another runner (the recovery worker) ended some of them first:
                    # the key's stored answer, if it has one, is this request's too.
                    replay = await self._settle(unit, txs)
                    if replay is not None:
                        unit.future.set_exception(replay)
                        continue
                    unit.answered = None  # made from what this runner saw: not stored
                unit.future.set_result(Ended(txs, unit.answered))

    async def _settle(self, unit: Unit, txs: list[Transaction]) -> Replay | None:
        """The key's answer: the one stored already (by the runner that ended the
        transaction, or by a replay made from it), or else the one made from `txs` as
        they stand, stored now. Every replay then answers as this request does, however
        the transactions change later (a refund, a capture). None when the key ran out."""
        assert unit.key is not None
        status, body = unit.answer(txs) if unit.answer else self.saga.answer(txs[0])
        async with self.saga.db.raw() as conn:
            row = await repository.settle_answer(conn, unit.key.user_id, unit.key.key, status, body)
        return Replay.of(row, replayed=False)


def _pending(unit: Unit) -> OutcomePending:
    if len(unit.txs) == 1 and unit.txs[0].batch_id is None:
        return OutcomePending.of_transaction(unit.txs[0].id)
    batch_id = unit.txs[0].batch_id
    assert batch_id is not None
    return OutcomePending.of_batch(batch_id)
