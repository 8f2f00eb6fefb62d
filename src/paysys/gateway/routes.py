"""The public routing table: every path a client may call, and nothing else.

Internal paths (such as /wallets/{id}/add-funds) are absent, so they answer 404 here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Limit = Literal["register", "login", "user"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    service: str
    auth: bool
    limit: Limit
    # The operation's name in the public OpenAPI document: short and stable, since
    # generated clients name their functions after it.
    operation_id: str
    # Its answer is passed on as it comes (a statement's CSV), not read whole first.
    streams: bool = False


ROUTES: tuple[Route, ...] = (
    Route("POST", "/users/register", "users", False, "register", "registerUser"),
    Route("POST", "/users/login", "users", False, "login", "login"),
    Route("POST", "/users/refresh", "users", False, "login", "refreshTokens"),
    Route("POST", "/users/logout", "users", True, "user", "logout"),
    Route("GET", "/users/me", "users", True, "user", "getCurrentUser"),
    Route("POST", "/wallets/create", "wallets", True, "user", "createWallet"),
    Route("GET", "/wallets", "wallets", True, "user", "listWallets"),
    Route("GET", "/wallets/{id}", "wallets", True, "user", "getWallet"),
    Route("GET", "/wallets/{id}/payee", "wallets", True, "user", "getWalletPayee"),
    Route("POST", "/wallets/{id}/deactivate", "wallets", True, "user", "deactivateWallet"),
    Route("POST", "/wallets/{id}/activate", "wallets", True, "user", "activateWallet"),
    Route("GET", "/wallets/{id}/balance", "wallets", True, "user", "getWalletBalanceAt"),
    Route("GET", "/wallets/{id}/statement", "wallets", True, "user", "getWalletStatement", True),
    Route("GET", "/wallets/{id}/limits", "wallets", True, "user", "getWalletLimits"),
    Route("PUT", "/wallets/{id}/limits", "wallets", True, "user", "setWalletLimits"),
    Route("POST", "/transactions/create", "transactions", True, "user", "createTransaction"),
    Route("POST", "/transactions/batch", "transactions", True, "user", "createTransactionBatch"),
    Route("GET", "/transactions", "transactions", True, "user", "listTransactions"),
    Route("GET", "/transactions/{id}", "transactions", True, "user", "getTransaction"),
    Route("POST", "/transactions/{id}/refund", "transactions", True, "user", "refundTransaction"),
    Route("POST", "/transactions/{id}/capture", "transactions", True, "user", "captureTransaction"),
    Route("POST", "/transactions/{id}/void", "transactions", True, "user", "voidTransaction"),
    Route("POST", "/webhooks", "notifications", True, "user", "createWebhook"),
    Route("GET", "/webhooks", "notifications", True, "user", "listWebhooks"),
    Route("GET", "/webhooks/{id}", "notifications", True, "user", "getWebhook"),
    Route("DELETE", "/webhooks/{id}", "notifications", True, "user", "deleteWebhook"),
    Route("GET", "/webhooks/{id}/deliveries", "notifications", True, "user", "listDeliveries"),
    Route(
        "POST",
        "/webhooks/{id}/deliveries/{delivery_id}/retry",
        "notifications",
        True,
        "user",
        "retryDelivery",
    ),
)

# Request headers a client may send on to a service; everything else (notably any
# X-User-Id or X-Internal-Token of its own) is dropped.
FORWARD_REQUEST_HEADERS = ("content-type", "accept", "idempotency-key")
FORWARD_RESPONSE_HEADERS = (
    "content-type",
    "content-disposition",
    "idempotent-replayed",
    "retry-after",
    "location",
)
