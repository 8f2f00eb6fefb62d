"""Fixtures for kit-level tests: a scratch schema with an outbox and inbox table."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def schema_of(
    infra: Infra, metadata: MetaData, prefix: str, pool_size: int = 5, drop: bool = False
) -> AsyncIterator[tuple[Database, str]]:
    """A new PostgreSQL schema with `metadata`'s tables, and a Database on it; dropped
    afterwards when `drop`."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(infra.database_url)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{name}"'))
        await conn.execute(text(f'SET search_path TO "{name}"'))
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    db = Database(infra.database_url, name, pool_size=pool_size)
    try:
        yield db, name
    finally:
        await db.dispose()
        if drop:
            engine = create_async_engine(infra.database_url)
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            await engine.dispose()


@pytest.fixture
async def scratch(infra: Infra) -> AsyncIterator[Scratch]:
    metadata = MetaData()
    outbox = outbox_table(metadata)
    inbox = inbox_table(metadata)
    things = Table(
        "things", metadata, Column("id", Integer, primary_key=True), Column("name", String(50))
    )
    async with schema_of(infra, metadata, "kit") as (db, _):
        yield Scratch(db, outbox, inbox, things)
