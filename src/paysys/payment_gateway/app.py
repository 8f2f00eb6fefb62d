"""Builds the payment_gateway service app."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.runtime import Runtime
from paysys.kit.settings import KitSettings
from paysys.payment_gateway import models


def create_app(settings: KitSettings | None = None) -> FastAPI:
    settings = settings or KitSettings()
    rt = Runtime("payment_gateway", settings, schema="payment_gateway", outbox=models.outbox)
    return build_app("payment_gateway", settings, rt.lifespan())
