"""Webhooks, the rules (no I/O but the resolver's): who an event concerns, how a body is
signed, which addresses may be called, when a failed delivery is tried again."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from paysys.kit.events import TOPICS, EventEnvelope

SECRET_PREFIX = "whsec_"
MAX_ENDPOINTS = 10
TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 64 * 1024  # read of an answer, at most; the rest is never read
GIVE_UP_AFTER = timedelta(days=3)
# Cloud metadata services: refused whatever their address class.
METADATA = {
    ipaddress.ip_address(a) for a in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254")
}


def new_secret() -> str:
    """`whsec_` and 32 random bytes, base64url."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, body: bytes, t: int) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with the whole
    secret, `whsec_` included (as Stripe signs)."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def concerned(envelope: EventEnvelope) -> list[str]:
    """The users an event is about: both parties of a transaction, a wallet's owner, a
    new user. (payment.processed names nobody: see service.add_deliveries.)"""
    data, kind = envelope.data, envelope.event_type
    if kind.startswith("transaction."):
        users = [data.get("source_user_id"), data.get("destination_user_id")]
    elif kind.startswith("wallet.") or kind == "user.registered":
        users = [data.get("user_id")]
    else:
        users = []
    return list(dict.fromkeys(str(u) for u in users if u))


def retry_delay(attempts: int, base_seconds: float = 15.0) -> timedelta:
    """After the n-th failed try: 15 s, 30 s, 1 min, 2 min, ... at most 6 h (the first
    retry within 30 s; about 20 tries over the three days)."""
    return timedelta(seconds=min(base_seconds * 2 ** max(attempts - 1, 0), 6 * 3600))


def topics_valid(events: list[str]) -> list[str]:
    return [e for e in events if e not in TOPICS]


# -- which addresses may be called: public ones only, outside local and test mode


def address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global is False for loopback, private, link-local, shared (100.64/10),
    # reserved, documentation and unspecified addresses.
    return ip.is_global and not ip.is_multicast and ip not in METADATA


class UrlNotAllowed(ValueError):
    """An endpoint URL paysys will not call."""


Resolve = Callable[[str, int], Awaitable[list[str]]]


async def check_url(url: str, public_only: bool, resolve: Resolve) -> None:
    """At creation: `https://` with a host (outside local and test mode, only a host
    whose every address is public). Checked again at connect time (SafeResolver): the
    name may resolve elsewhere by then (DNS rebinding)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # a port out of range raises here
    except ValueError:
        raise UrlNotAllowed("The URL is not a valid address.") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UrlNotAllowed("The URL must be an absolute https:// address.")
    if parts.username or parts.password:
        raise UrlNotAllowed("The URL must not carry a user name or password.")
    if not public_only:
        return
    if parts.scheme != "https":
        raise UrlNotAllowed("The URL must use https://.")
    try:
        addresses = await resolve(parts.hostname, port or 443)
    except OSError:
        raise UrlNotAllowed("The URL's host does not resolve.") from None
    if not addresses or not all(address_allowed(a) for a in addresses):
        raise UrlNotAllowed("The URL's host is not a public address.")


class SafeResolver(AbstractResolver):
    """aiohttp's resolver, refusing any name that resolves to an address that is not
    public: the check at connect time, which a DNS answer changed since the endpoint was
    created (rebinding) cannot pass. An IP literal is checked by the sender."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if not found or not all(address_allowed(r["host"]) for r in found):
            raise OSError(f"{host} resolves to an address that is not public")
        return found

    async def close(self) -> None:
        await self.inner.close()


def host_is_literal(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "events": list(row.events),
        "status": row.status,
        "created_at": row.created_at,
    }
