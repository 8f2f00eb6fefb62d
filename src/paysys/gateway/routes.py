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


ROUTES: tuple[Route, ...] = (
    Route("POST", "/users/register", "users", False, "register"),
    Route("POST", "/users/login", "users", False, "login"),
    Route("POST", "/users/refresh", "users", False, "login"),
    Route("POST", "/users/logout", "users", True, "user"),
    Route("GET", "/users/me", "users", True, "user"),
    Route("POST", "/wallets/create", "wallets", True, "user"),
    Route("GET", "/wallets", "wallets", True, "user"),
    Route("GET", "/wallets/{id}", "wallets", True, "user"),
    Route("POST", "/wallets/{id}/deactivate", "wallets", True, "user"),
    Route("POST", "/wallets/{id}/activate", "wallets", True, "user"),
    Route("POST", "/transactions/create", "transactions", True, "user"),
    Route("GET", "/transactions", "transactions", True, "user"),
    Route("GET", "/transactions/{id}", "transactions", True, "user"),
)

# Request headers a client may send on to a service; everything else (notably any
# X-User-Id or X-Internal-Token of its own) is dropped.
FORWARD_REQUEST_HEADERS = ("content-type", "accept", "idempotency-key")
FORWARD_RESPONSE_HEADERS = ("content-type", "idempotent-replayed", "retry-after", "location")
