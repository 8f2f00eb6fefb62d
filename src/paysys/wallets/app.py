"""Builds the wallets service app."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.runtime import Runtime
from paysys.wallets import models
from paysys.wallets.cache import WalletCache
from paysys.wallets.clients import Users
from paysys.wallets.router import (
    capture_batch,
    hold_batch,
    holds,
    internal,
    internal_misc,
    router,
    transfer,
    transfer_batch,
)
from paysys.wallets.settings import WalletsSettings


def create_app(settings: WalletsSettings | None = None) -> FastAPI:
    settings = settings or WalletsSettings()
    rt = Runtime(
        "wallets",
        settings,
        schema="wallets",
        outbox=models.outbox,
        records=models.records_outbox,
        redis=True,
        mongo=True,
        http=True,
    )

    async def on_start(app: FastAPI) -> None:
        app.state.cache = WalletCache(rt.redis)
        app.state.users = Users(rt.client("users", 5.0))

    app = build_app("wallets", settings, rt.lifespan(on_start))
    # internal first: /wallets/{id}/add-funds must not be shadowed by a public route
    app.include_router(internal)
    app.include_router(internal_misc)
    app.add_route("/internal/holds/batch", hold_batch, methods=["POST"], include_in_schema=False)
    app.add_route(
        "/internal/holds/captures", capture_batch, methods=["POST"], include_in_schema=False
    )
    app.include_router(holds)
    app.add_route("/internal/transfers", transfer, methods=["POST"], include_in_schema=False)
    app.add_route(
        "/internal/transfers/batch", transfer_batch, methods=["POST"], include_in_schema=False
    )
    app.include_router(router)
    return app
