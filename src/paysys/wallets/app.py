"""Builds the wallets service app."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.runtime import Runtime
from paysys.kit.settings import KitSettings
from paysys.wallets import models


def create_app(settings: KitSettings | None = None) -> FastAPI:
    settings = settings or KitSettings()
    rt = Runtime(
        "wallets", settings, schema="wallets", outbox=models.outbox, redis=True, mongo=True
    )
    return build_app("wallets", settings, rt.lifespan())
