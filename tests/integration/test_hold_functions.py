"""Holds and captures as one statement each (hold_funds, capture_hold: migration 0013),
against the real wallets schema: twins racing on one transaction id take effect once,
a partial capture gives back to the limits only what it did not take, and the books
agree with the balances."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from paysys.kit.db import Database
from paysys.kit.errors import ValidationFailed
from paysys.kit.outbox import Outbox
from paysys.wallets import service
from paysys.wallets.models import outbox as wallets_outbox
from tests.conftest import Stack
from tests.integration.test_transfer_outcome import two_wallets

OUTBOX = Outbox(wallets_outbox, "wallets")
MAXIMUMS = {"personal": {"USD": (1000, 1000, 1000)}}


async def state(conn: asyncpg.Connection, wallet: uuid.UUID) -> tuple[int, int, int]:
    row = await conn.fetchrow(
        "SELECT balance, held_balance, spent_today FROM wallets.wallets WHERE id = $1", wallet
    )
    return row["balance"], row["held_balance"], row["spent_today"]


async def test_twin_holds_and_twin_captures_take_effect_once(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.infra.dsn)
    db = Database(stack.infra.database_url, "wallets", pool_size=8)
    try:
        payer, merchant = await two_wallets(conn, 500)
        tx = uuid.uuid4()

        def hold() -> object:
            return service.hold(db, OUTBOX, tx, payer, merchant, 300, "USD", MAXIMUMS)

        held = await asyncio.gather(*(hold() for _ in range(6)))
        assert all(isinstance(h, service.Held) for h in held), held
        assert await state(conn, payer) == (500, 300, 300)
        # Another hold of more than is left available is refused, and kept refused.
        other = uuid.uuid4()
        for _ in range(2):
            refused = await service.hold(db, OUTBOX, other, payer, merchant, 201, "USD", MAXIMUMS)
            assert isinstance(refused, service.Refused)
            assert (refused.code, refused.wallet_id) == ("INSUFFICIENT_FUNDS", payer)
        # More than the hold is refused and changes nothing.
        try:
            await service.capture(db, OUTBOX, tx, 301)
            raise AssertionError("a capture above the hold went through")
        except ValidationFailed as exc:
            assert exc.code == "AMOUNT_EXCEEDS_AUTHORIZED"
        # Twins with different amounts: the first to get the lock decides for all.
        captured = await asyncio.gather(
            *(service.capture(db, OUTBOX, tx, amount) for amount in (120, 250, 120, 300))
        )
        amounts = {c.amount for c in captured if isinstance(c, service.Captured)}
        assert len(captured) == 4 and len(amounts) == 1, captured
        (taken,) = amounts
        # Released whole; only the captured amount left, and only it stays counted.
        assert await state(conn, payer) == (500 - taken, 0, taken)
        assert (await state(conn, merchant))[0] == taken
        entries = await conn.fetch(
            "SELECT wallet_id, amount, balance_after FROM wallets.ledger_entries"
            " WHERE transaction_id = $1 ORDER BY id",
            tx,
        )
        assert [(e["wallet_id"], e["amount"]) for e in entries] == [
            (payer, -taken),
            (merchant, taken),
        ]
        assert [e["balance_after"] for e in entries] == [500 - taken, taken]
        hold_row = await conn.fetchrow(
            "SELECT status, captured_amount FROM wallets.holds WHERE transaction_id = $1", tx
        )
        assert tuple(hold_row) == ("captured", taken)
        # A hold that was never made, or was refused: nothing to capture.
        assert await service.capture(db, OUTBOX, uuid.uuid4(), 1) is None
        assert await service.capture(db, OUTBOX, other, 1) is None
    finally:
        await db.dispose()
        await conn.close()
