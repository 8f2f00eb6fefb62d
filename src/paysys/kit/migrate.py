"""Alembic per service: each service's history lives in migrations/<service>/ and its
tables (and version table) in the PostgreSQL schema of the same name."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"
# Serialises migrations when several instances of a service start at once.
_LOCK_KEY = 0x70617973


def alembic_config(service: str, database_url: str, settings: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS / service))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["schema"] = service
    # The service's settings, for data migrations that need them (e.g. keys to seal
    # personal data): context.config.attributes["settings"] in a migration.
    cfg.attributes["settings"] = settings
    return cfg


def head(service: str) -> str:
    """The revision this code's migrations end at."""
    found = ScriptDirectory.from_config(alembic_config(service, "")).get_current_head()
    assert found is not None, f"no migrations for {service}"
    return found


async def upgrade(service: str, database_url: str, settings: Any = None) -> None:
    # Alembic's env.py runs its own event loop, so it gets a thread of its own.
    cfg = alembic_config(service, database_url, settings)
    await asyncio.to_thread(command.upgrade, cfg, "head")


def run_env(metadata: MetaData) -> None:
    """Body of every migrations/<service>/env.py."""
    from alembic import context

    cfg = context.config
    schema = cfg.attributes["schema"]
    url = cfg.get_main_option("sqlalchemy.url")
    assert url is not None

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            compare_type=True,
            include_name=lambda name, type_, _parent: (
                not (type_ == "table" and name == "alembic_version")
            ),
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.commit()
            try:
                await conn.run_sync(do_run)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                await conn.commit()
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, version_table_schema=schema)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(main())
