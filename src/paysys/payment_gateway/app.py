"""Builds the payment-gateway service app."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.runtime import Runtime
from paysys.payment_gateway import models
from paysys.payment_gateway.router import router
from paysys.payment_gateway.settings import PaymentGatewaySettings


def create_app(settings: PaymentGatewaySettings | None = None) -> FastAPI:
    settings = settings or PaymentGatewaySettings()
    rt = Runtime("payment_gateway", settings, schema="payment_gateway", outbox=models.outbox)
    app = build_app("payment_gateway", settings, rt.lifespan())
    app.include_router(router)
    return app
