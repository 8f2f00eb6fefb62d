"""Calls from wallets to the users service: who owns a wallet, for confirmation of
payee (wallets never reads the users' tables)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from paysys.kit.errors import ServiceUnavailable
from paysys.kit.http import ServiceClient, ServiceUnreachable


@dataclass(frozen=True)
class Owner:
    full_name: str
    account_type: str


@dataclass
class Users:
    client: ServiceClient

    async def owner(self, user_id: uuid.UUID) -> Owner | None:
        try:
            resp = await self.client.request("GET", f"/internal/users/{user_id}")
        except ServiceUnreachable:
            raise ServiceUnavailable("The users service is not available; retry later.") from None
        if resp.status == 404:
            return None
        if resp.status != 200 or not isinstance(resp.body, dict):
            raise ServiceUnavailable("The users service is not available; retry later.")
        return Owner(str(resp.body["full_name"]), str(resp.body["account_type"]))
