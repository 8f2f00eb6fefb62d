"""Settings of the API gateway."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from paysys.kit.settings import KitSettings


class GatewaySettings(KitSettings):
    # Per client IP on the unauthenticated auth routes, per user elsewhere.
    rate_limit_register: int = 10
    rate_limit_login: int = 20
    rate_limit_user: int = 300
    rate_limit_window_seconds: int = 60
    upstream_timeout_seconds: float = 30.0
    # Tries per request when an upstream connection fails (see Proxy.forward for which
    # requests may be sent again).
    upstream_attempts: int = Field(3, ge=1, le=5)
    # How many proxies in front of the gateway append to X-Forwarded-For (0: none, use
    # the TCP peer). Only then is the client IP taken from that header.
    trusted_proxy_hops: int = 0
    # The console (web/console) and the installed npm assets (web/node_modules).
    web_dir: Path = Path(__file__).resolve().parents[3] / "web"
