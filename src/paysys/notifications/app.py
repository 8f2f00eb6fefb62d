"""Builds the notifications service: the Kafka consumer, plus a small HTTP app for
health, readiness and metrics."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.runtime import Runtime
from paysys.kit.settings import KitSettings
from paysys.notifications import models


def create_app(settings: KitSettings | None = None) -> FastAPI:
    settings = settings or KitSettings()
    rt = Runtime("notifications", settings, schema="notifications", mongo=True, kafka=True)
    return build_app("notifications", settings, rt.lifespan(), openapi=False)


__all__ = ["create_app", "models"]
