"""Builds the API gateway app."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.runtime import Runtime
from paysys.kit.settings import KitSettings


def create_app(settings: KitSettings | None = None) -> FastAPI:
    settings = settings or KitSettings()
    rt = Runtime("gateway", settings, redis=True, http=True)
    return build_app("gateway", settings, rt.lifespan())
