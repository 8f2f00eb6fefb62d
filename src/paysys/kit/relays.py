"""The process of `paysys relay SERVICE`: a service's outbox relay (Kafka) and records
relay (MongoDB), apart from the process that answers its requests (PAYSYS_RELAYS=apart
there). It needs nothing of the service but its schema's name and which of kit's two
outbox tables it keeps (`outbox`, `records_outbox`: kit.settings.RELAYED, held to what
each service declares by tests/unit/test_relayed.py). It answers /health, /ready and
/metrics only."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import MetaData

from paysys.kit.app import build_app
from paysys.kit.outbox import outbox_table
from paysys.kit.records import records_table
from paysys.kit.runtime import Runtime
from paysys.kit.settings import RELAYED, KitSettings


def create_app(service: str, settings: KitSettings | None = None) -> FastAPI:
    settings = settings or KitSettings()
    tables, metadata = RELAYED[service], MetaData()
    rt: Runtime[KitSettings] = Runtime(
        service,
        settings,
        schema=service,
        outbox=outbox_table(metadata) if "outbox" in tables else None,
        records=records_table(metadata) if "records_outbox" in tables else None,
        mongo="records_outbox" in tables,
        relay_only=True,
    )
    return build_app(f"{service}-relay", settings, rt.lifespan(), openapi=False)
