"""`paysys relay SERVICE` relays the outbox tables kit.settings.RELAYED names for the
service: exactly those its models keep, for every service that keeps any."""

from __future__ import annotations

import importlib

from paysys.kit.settings import RELAYED, SERVICE_PORTS


def test_every_service_outbox_table_is_relayed_and_nothing_else() -> None:
    kept = {}
    for service in SERVICE_PORTS:
        try:
            models = importlib.import_module(f"paysys.{service}.models")
        except ModuleNotFoundError:
            continue  # the gateway keeps no tables
        tables = {t.name for t in models.Base.metadata.tables.values()}
        if found := tuple(sorted(tables & {"outbox", "records_outbox"})):
            kept[service] = found
    assert kept == {service: tuple(sorted(tables)) for service, tables in RELAYED.items()}
