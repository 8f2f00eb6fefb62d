"""Settings of the users service."""

from __future__ import annotations

from paysys.kit.settings import DataKeySettings


class UsersSettings(DataKeySettings):
    access_token_ttl_seconds: int = 900
    # Idle lifetime: a session unused (not refreshed) this long ends.
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Absolute lifetime: however often it is refreshed, a session ends this long after
    # its login, and the user logs in again.
    session_max_age_seconds: int = 90 * 24 * 3600
