"""Webhook rules (issue 23) with production semantics: which URLs and addresses may be
called, checked at creation and again at connect time on a resolver that answers
private addresses (DNS rebinding); the signature; the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import socket
from datetime import timedelta

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from paysys.notifications import webhooks


def resolver_answering(*addresses: str) -> webhooks.Resolve:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("http://hooks.example.com/paysys", ["93.184.216.34"]),  # not https
        ("https://hooks.example.com/x", ["127.0.0.1"]),
        ("https://hooks.example.com/x", ["93.184.216.34", "10.1.2.3"]),  # one private
        ("https://hooks.example.com/x", ["192.168.1.10"]),
        ("https://hooks.example.com/x", ["169.254.169.254"]),  # cloud metadata
        ("https://hooks.example.com/x", ["100.100.100.200"]),
        ("https://hooks.example.com/x", ["::1"]),
        ("https://hooks.example.com/x", ["fe80::1"]),
        ("https://hooks.example.com/x", ["fd00:ec2::254"]),
        ("https://hooks.example.com/x", ["::ffff:127.0.0.1"]),  # IPv4-mapped loopback
        ("https://hooks.example.com/x", ["0.0.0.0"]),
        ("https://hooks.example.com/x", []),
        ("https://user:pw@hooks.example.com/x", ["93.184.216.34"]),
        ("ftp://hooks.example.com/x", ["93.184.216.34"]),
        ("https:///nohost", ["93.184.216.34"]),
    ],
)
async def test_urls_that_are_refused_in_production(url: str, answers: list[str]) -> None:
    with pytest.raises(webhooks.UrlNotAllowed):
        await webhooks.check_url(url, True, resolver_answering(*answers))


async def test_a_public_https_url_is_allowed_and_local_mode_allows_loopback() -> None:
    await webhooks.check_url(
        "https://hooks.example.com/x", True, resolver_answering("93.184.216.34")
    )
    await webhooks.check_url("http://127.0.0.1:9999/x", False, resolver_answering("127.0.0.1"))


class Rebinding(AbstractResolver):
    """A name that resolved to a public address at creation, private now."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host=self.address, port=port, family=family, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None


async def test_the_connect_time_resolver_refuses_a_name_rebound_to_a_private_address() -> None:
    with pytest.raises(OSError):
        await webhooks.SafeResolver(Rebinding("10.0.0.7")).resolve("hooks.example.com", 443)
    found = await webhooks.SafeResolver(Rebinding("93.184.216.34")).resolve(
        "hooks.example.com", 443
    )
    assert found[0]["host"] == "93.184.216.34"


def test_the_signature_is_an_hmac_of_the_timestamp_and_the_body_with_the_whole_secret() -> None:
    secret, body, t = "whsec_abc", b'{"event_id": "1"}', 1_700_000_000
    header = webhooks.signature(secret, body, t)
    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert webhooks.new_secret().startswith("whsec_") and len(webhooks.new_secret()) >= 6 + 43


def test_retries_back_off_from_within_30_seconds_to_at_most_six_hours() -> None:
    delays = [webhooks.retry_delay(n) for n in range(1, 30)]
    assert delays[0] <= timedelta(seconds=30)
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert max(delays) == timedelta(hours=6)
    assert sum(delays[:24], timedelta()) > timedelta(days=3)  # tried over the three days
