"""Builds the users service app."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.metrics import LOGINS, prime
from paysys.kit.runtime import Runtime
from paysys.users import models
from paysys.users.router import internal, router
from paysys.users.sessions import SessionStore
from paysys.users.settings import UsersSettings


def create_app(settings: UsersSettings | None = None) -> FastAPI:
    settings = settings or UsersSettings()
    rt = Runtime(
        "users",
        settings,
        schema="users",
        outbox=models.outbox,
        records=models.records_outbox,
        redis=True,
        mongo=True,
    )

    async def on_start(app: FastAPI) -> None:
        app.state.sessions = SessionStore(
            rt.redis, settings.refresh_token_ttl_seconds, settings.session_max_age_seconds
        )
        prime(LOGINS, ("success",), ("failure",))

    app = build_app("users", settings, rt.lifespan(on_start))
    app.include_router(router)
    app.include_router(internal)
    return app
