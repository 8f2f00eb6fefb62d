"""The gateway over HTTPS, with a certificate from the local CA that `make run TLS=1`
makes: a client that trusts the CA gets the API; the certificate is checked, so a client
that does not trust it is refused, and plain HTTP on that port gets nothing."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from paysys.kit.tls import LocalTls, local_tls
from paysys_dev.fleet import spawn_service, stop_processes
from paysys_dev.stack import wait_ready
from tests.conftest import TEST_PORTS, Stack, free_port, unique_email
from tests.e2e.helpers import PASSWORD

PORT = free_port()


@pytest.fixture(scope="module")
def tls_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTls]:
    made = local_tls(tmp_path_factory.mktemp("tls"))
    env = {
        **stack.infra.env,
        "PAYSYS_GATEWAY_PORT": str(PORT),
        "PAYSYS_USERS_PORT": str(TEST_PORTS["users"]),
        "PAYSYS_WALLETS_PORT": str(TEST_PORTS["wallets"]),
        "PAYSYS_TRANSACTIONS_PORT": str(TEST_PORTS["transactions"]),
        "PAYSYS_TLS_CERTFILE": str(made.cert_file),
        "PAYSYS_TLS_KEYFILE": str(made.key_file),
    }
    proc = spawn_service("gateway", env, stack.log_dir / "tls")
    try:
        wait_ready(
            {"gateway": f"https://127.0.0.1:{PORT}"}, 60, {"gateway": proc}, str(made.ca_file)
        )
        yield made
    finally:
        stop_processes({"gateway": proc})


async def test_the_gateway_serves_the_api_over_https(tls_gateway: LocalTls) -> None:
    async with httpx.AsyncClient(
        base_url=f"https://localhost:{PORT}",
        verify=ssl.create_default_context(cafile=str(tls_gateway.ca_file)),
        timeout=30,
    ) as api:
        email = unique_email("tls")
        body = {"email": email, "password": PASSWORD, "full_name": "Over TLS"}
        assert (await api.post("/users/register", json=body)).status_code == 201
        login = await api.post("/users/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200
        token = login.json()["access_token"]
        me = await api.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["email"] == email


async def test_an_untrusted_client_and_plain_http_get_nothing(tls_gateway: LocalTls) -> None:
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{PORT}", timeout=10) as api:
        with pytest.raises(httpx.ConnectError):  # the system store does not know the CA
            await api.get("/health")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=10) as plain:
        with pytest.raises(httpx.HTTPError):
            resp = await plain.get("/health")
            resp.raise_for_status()


def test_the_local_ca_is_made_once_and_reused(tmp_path: Path) -> None:
    first = local_tls(tmp_path)
    ca = first.ca_file.read_bytes()
    assert local_tls(tmp_path).ca_file.read_bytes() == ca
    assert oct(first.key_file.stat().st_mode)[-3:] == "600"


@pytest.fixture(scope="module")
def internal_tls(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Issue 20.13: users serving HTTPS only, and two gateways calling it over TLS: one
    trusting the local CA (PAYSYS_TLS_CA_FILE), one trusting only the system's store."""
    made = local_tls(tmp_path_factory.mktemp("internal-tls"))
    users_port, trusting, untrusting = free_port(), free_port(), free_port()
    users_env = {
        **stack.infra.env,
        "PAYSYS_USERS_PORT": str(users_port),
        "PAYSYS_TLS_CERTFILE": str(made.cert_file),
        "PAYSYS_TLS_KEYFILE": str(made.key_file),
    }
    gateway_env = {
        **stack.infra.env,
        "PAYSYS_USERS_PORT": str(users_port),
        "PAYSYS_INTERNAL_SCHEME": "https",
    }
    procs = {
        "users": spawn_service("users", users_env, stack.log_dir / "internal-tls"),
        "trusting": spawn_service(
            "gateway",
            {
                **gateway_env,
                "PAYSYS_GATEWAY_PORT": str(trusting),
                "PAYSYS_TLS_CA_FILE": str(made.ca_file),
            },
            stack.log_dir / "internal-tls-trusting",
        ),
        "untrusting": spawn_service(
            "gateway",
            {**gateway_env, "PAYSYS_GATEWAY_PORT": str(untrusting)},
            stack.log_dir / "internal-tls-untrusting",
        ),
    }
    try:
        wait_ready({"users": f"https://127.0.0.1:{users_port}"}, 90, procs, str(made.ca_file))
        wait_ready(
            {
                "trusting": f"http://127.0.0.1:{trusting}",
                "untrusting": f"http://127.0.0.1:{untrusting}",
            },
            90,
            procs,
        )
        yield f"http://127.0.0.1:{trusting}", f"http://127.0.0.1:{untrusting}"
    finally:
        stop_processes(procs)


async def test_services_call_each_other_over_tls_and_check_the_certificate(
    internal_tls: tuple[str, str],
) -> None:
    trusting, untrusting = internal_tls
    body = {"email": unique_email("itls"), "password": PASSWORD, "full_name": "Inside TLS"}
    async with httpx.AsyncClient(base_url=trusting, timeout=30) as api:
        assert (await api.post("/users/register", json=body)).status_code == 201
    async with httpx.AsyncClient(base_url=untrusting, timeout=30) as api:
        refused = await api.post(
            "/users/login", json={"email": body["email"], "password": PASSWORD}
        )
    assert refused.status_code == 503  # an unknown certificate: no call, no credential
    assert refused.json()["code"] == "SERVICE_UNAVAILABLE"
