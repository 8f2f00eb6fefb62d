"""move_batch against its reference (issue 21): the body of migration 0012, which read
and updated the wallets row by row for each move, is the plain statement of the rules;
0014 applies the same moves on the wallets held in memory. On the same random batches
(transfers, payments and refunds; replays of earlier moves; missing, inactive and
foreign-currency wallets; limits per owner and per account type; spending windows of
today and of older days) from the same state, both give the same rows back and leave
the same wallets, ledger, events and outcomes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import uuid
from typing import Any

import asyncpg
import pytest
from alembic import command
from bench.isolated import create_database

from paysys.kit.migrate import alembic_config
from tests.conftest import Infra

MOVE_BATCH = "SELECT * FROM move_batch(" + ", ".join(f"${i}" for i in range(1, 17)) + ")"
MAXIMUMS = {"personal": {"USD": [100_000, 300_000, 1_000_000]}, "merchant": {"USD": [None] * 3}}


def _migrate(database_url: str, revision: str) -> None:
    command.upgrade(alembic_config("wallets", database_url), revision)


async def _admin(root_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(root_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "wallets"})
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return conn


def _batches(rng: random.Random, wallets: list[uuid.UUID], count: int, size: int) -> list[Any]:
    now = dt.datetime.now(dt.UTC)
    made: list[tuple[Any, ...]] = []
    batches = []
    for _ in range(count):
        moves: dict[uuid.UUID, tuple[Any, ...]] = {}
        for _ in range(rng.randint(1, size)):
            if made and rng.random() < 0.05:
                m = rng.choice(made)  # asked again: its first outcome
            else:
                src = uuid.uuid4() if rng.random() < 0.03 else rng.choice(wallets)
                m = (
                    uuid.uuid4(),
                    src,
                    rng.choice(wallets),
                    rng.choice([1, 50, 999, 5_000, 20_000, 120_000, rng.randint(1, 60_000)]),
                    "EUR" if rng.random() < 0.03 else "USD",
                    rng.choice(["transfer", "transfer", "payment", "refund"]),
                    rng.choice([None, "rent"]),
                )
                made.append(m)
            moves.setdefault(m[0], m)  # a transaction once per batch
        ms = list(moves.values())
        debits, credits = [uuid.uuid4() for _ in ms], [uuid.uuid4() for _ in ms]
        batches.append(
            (
                [m[0] for m in ms],
                [m[1] for m in ms],
                [m[2] for m in ms],
                [m[3] for m in ms],
                [m[4] for m in ms],
                [2] * len(ms),
                debits,
                [{"event_id": str(e), "data": {}} for e in debits],
                credits,
                [{"event_id": str(e), "data": {}} for e in credits],
                "wallet.funds_deducted",
                "wallet.funds_added",
                [m[5] for m in ms],
                [m[6] for m in ms],
                now,
                MAXIMUMS,
            )
        )
    return batches


async def _seed(conn: asyncpg.Connection, rng: random.Random, count: int) -> list[uuid.UUID]:
    today, ids = dt.datetime.now(dt.UTC).date(), []
    for i in range(count):
        ids.append(uuid.uuid4())
        await conn.execute(
            "INSERT INTO wallets (id, user_id, currency, balance, status, version, account_type,"
            " limit_daily, spent_day, spent_today, spent_month, spent_this_month)"
            " VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10, $11)",
            ids[-1],
            uuid.uuid4(),
            "EUR" if i == 5 else "USD",
            rng.choice([0, 1_000, 100_000, 10_000_000]),
            "INACTIVE" if i == 3 else "ACTIVE",
            "merchant" if i % 7 == 0 else None,
            150_000 if i % 5 == 0 else None,
            today if i % 4 == 0 else dt.date(2020, 1, 1),
            rng.randint(0, 200_000),
            today.replace(day=1) if i % 3 == 0 else None,
            rng.randint(0, 900_000),
        )
    return ids


async def _run(dsn: str, batches: list[Any]) -> tuple[list[Any], list[Any]]:
    conn = await _connect(dsn)
    try:
        answers = []
        for args in batches:
            async with conn.transaction():
                rows = await conn.fetch(MOVE_BATCH, *args)
            items = [tuple(r) for r in rows if r["result"] != "state"]
            # the changed wallets' states, in any order, but their instant of update
            states = sorted(
                repr({k: v for k, v in r["wallet"].items() if k != "updated_at"})
                for r in rows
                if r["result"] == "state"
            )
            answers.append((items, states))
        tables = [
            [tuple(r) for r in await conn.fetch(query)]
            for query in (
                "SELECT id, user_id, currency, balance, held_balance, status, version, spent_day,"
                " spent_today, spent_month, spent_this_month FROM wallets ORDER BY id",
                "SELECT wallet_id, transaction_id, operation, amount, balance_after, kind,"
                " description, counterparty_wallet_id FROM ledger_entries ORDER BY id",
                "SELECT event_id, topic, key, payload FROM outbox ORDER BY id",
                "SELECT transaction_id, outcome, wallet_id, code FROM transfer_outcomes"
                " ORDER BY transaction_id",
            )
        ]
        return answers, tables
    finally:
        await conn.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_move_batch_gives_what_its_row_by_row_reference_gives(
    infra: Infra, seed: int
) -> None:
    rng = random.Random(seed)
    root = infra.dsn.rsplit("/", 1)[0] + "/postgres"
    names = [f"{infra.db_name}_ref{seed}", f"{infra.db_name}_new{seed}"]
    urls = [infra.database_url.rsplit("/", 1)[0] + "/" + n for n in names]
    dsns = [u.replace("+asyncpg", "") for u in urls]
    await asyncio.to_thread(create_database, root, names[0])
    try:
        await asyncio.to_thread(_migrate, urls[0], "0013")  # move_batch as 0012 wrote it
        conn = await _connect(dsns[0])
        try:
            wallets = await _seed(conn, rng, 40)
        finally:
            await conn.close()
        # the same state, then the current move_batch
        await _admin(root, f'CREATE DATABASE "{names[1]}" TEMPLATE "{names[0]}"')
        await asyncio.to_thread(_migrate, urls[1], "head")
        batches = _batches(rng, wallets, 12, 150)
        reference, current = [await _run(dsn, batches) for dsn in dsns]
        results = [r for answer in reference[0] for r in answer[0]]
        assert {r[1] for r in results} >= {"moved", "refused", "missing", "kept_moved"}
        assert current[0] == reference[0]
        tables = ("wallets", "ledger", "events", "outcomes")
        for table, theirs, ours in zip(tables, reference[1], current[1], strict=True):
            assert ours == theirs, table
    finally:
        for name in names:
            await _admin(root, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
