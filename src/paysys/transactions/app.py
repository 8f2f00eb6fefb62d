"""Builds the transactions service app, with its recovery worker."""

from __future__ import annotations

from fastapi import FastAPI

from paysys.kit.app import build_app
from paysys.kit.metrics import TRANSACTION_DURATION, TRANSACTIONS, prime
from paysys.kit.runtime import Runtime
from paysys.transactions import models
from paysys.transactions.clients import Clients
from paysys.transactions.group import GroupCommit
from paysys.transactions.router import batch_answer, final_response, router, view
from paysys.transactions.saga import Saga
from paysys.transactions.settings import TransactionsSettings
from paysys.transactions.tasks import recovery_loop


def create_app(
    settings: TransactionsSettings | None = None, clients_class: type[Clients] = Clients
) -> FastAPI:
    """The service; tests pass their own `clients_class` (tests/support/faults.py)."""
    settings = settings or TransactionsSettings()
    rt = Runtime(
        "transactions",
        settings,
        schema="transactions",
        outbox=models.outbox,
        records=models.records_outbox,
        mongo=True,
        http=True,
    )

    async def on_start(app: FastAPI) -> None:
        timeout = settings.call_timeout_seconds
        clients = clients_class(
            wallets=rt.client("wallets", timeout),
            payments=rt.client("payment_gateway", timeout),
            users=rt.client("users", timeout),
            attempts=settings.step_attempts,
        )
        saga = Saga(
            rt.db,
            rt.outbox_or_fail,
            rt.records_or_fail,
            settings,
            clients,
            answer=final_response,
            answer_batch=batch_answer,
            view=view,
        )
        app.state.saga = saga
        group = GroupCommit(saga, settings.group_commit_max_items)
        app.state.group = group
        kinds = ("deposit", "transfer", "payment", "refund")
        prime(TRANSACTIONS, *[(k, s) for k in kinds for s in ("COMPLETED", "FAILED")])
        prime(TRANSACTIONS, ("payment", "AUTHORIZED"), ("payment", "VOIDED"))
        prime(TRANSACTION_DURATION, *[(k,) for k in kinds])
        rt.tasks.start("recovery", lambda: recovery_loop(saga))
        rt.tasks.start("group-commit", group.run)

    app = build_app("transactions", settings, rt.lifespan(on_start))
    app.include_router(router)
    return app
