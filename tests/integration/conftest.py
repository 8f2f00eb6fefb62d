"""Fixtures for kit-level tests: a scratch schema with an outbox and inbox table."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import create_async_engine

from paysys.kit.db import Database
from paysys.kit.outbox import inbox_table, outbox_table
from tests.conftest import Infra


@dataclass
class Scratch:
    db: Database
    outbox: Table
    inbox: Table
    things: Table


@pytest.fixture
async def scratch(infra: Infra) -> AsyncIterator[Scratch]:
    schema = f"kit_{uuid.uuid4().hex[:10]}"
    metadata = MetaData()
    outbox = outbox_table(metadata)
    inbox = inbox_table(metadata)
    things = Table(
        "things", metadata, Column("id", Integer, primary_key=True), Column("name", String(50))
    )
    engine = create_async_engine(infra.database_url)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.execute(text(f'SET search_path TO "{schema}"'))
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    db = Database(infra.database_url, schema, pool_size=5)
    try:
        yield Scratch(db, outbox, inbox, things)
    finally:
        await db.dispose()
