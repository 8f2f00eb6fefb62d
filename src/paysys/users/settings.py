"""Settings of the users service."""

from __future__ import annotations

from paysys.kit.settings import KitSettings


class UsersSettings(KitSettings):
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
