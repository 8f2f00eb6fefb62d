"""Builds the transactions service app."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.runtime import Runtime
from paysys.kit.settings import KitSettings
from paysys.transactions import models


def create_app(settings: KitSettings | None = None) -> FastAPI:
    settings = settings or KitSettings()
    rt = Runtime(
        "transactions",
        settings,
        schema="transactions",
        outbox=models.outbox,
        redis=True,
        mongo=True,
        http=True,
    )
    return build_app("transactions", settings, rt.lifespan())
