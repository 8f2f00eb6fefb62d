"""Defaults that decide safety without any I/O: the environment, secrets, leases, bind
addresses, request ids, per-IP limit identities, card fingerprints, mail failures."""

from __future__ import annotations

import aiosmtplib
import pytest

from paysys.gateway.ratelimit import ip_identity
from paysys.kit.context import safe_request_id
from paysys.kit.settings import DEV_JWT_SECRET, KitSettings
from paysys.notifications.settings import NotificationsSettings
from paysys.notifications.tasks import classify
from paysys.transactions.service import request_hash
from paysys.transactions.settings import TransactionsSettings


@pytest.fixture(autouse=True)
def no_paysys_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAYSYS_ENV", "PAYSYS_JWT_SECRET", "PAYSYS_INTERNAL_TOKEN", "PAYSYS_BIND_HOST"):
        monkeypatch.delenv(name, raising=False)


def test_no_environment_means_production_and_refuses_the_development_secrets() -> None:
    with pytest.raises(ValueError, match="PAYSYS_JWT_SECRET"):
        KitSettings()
    assert KitSettings(env="local").jwt_secret == DEV_JWT_SECRET
    ok = KitSettings(jwt_secret="a" * 40, internal_token="b" * 40)
    assert ok.env == "production"


def test_the_idempotency_hash_key_is_a_secret_too() -> None:
    with pytest.raises(ValueError, match="PAYSYS_IDEMPOTENCY_HASH_KEY"):
        TransactionsSettings(jwt_secret="a" * 40, internal_token="b" * 40)


def test_a_lease_shorter_than_the_longest_saga_step_is_refused() -> None:
    with pytest.raises(ValueError, match="PAYSYS_LEASE_SECONDS"):
        TransactionsSettings(env="local", call_timeout_seconds=10, step_attempts=3)
    fine = TransactionsSettings(
        env="local", call_timeout_seconds=10, step_attempts=3, lease_seconds=45
    )
    assert fine.lease_seconds > fine.longest_step_seconds


def test_a_mail_claim_shorter_than_a_batch_can_take_is_refused() -> None:
    # A claim that runs out while its sender still waits on the server hands the batch
    # to another sender: the emails go twice.
    with pytest.raises(ValueError, match="PAYSYS_MAIL_CLAIM_SECONDS"):
        NotificationsSettings(env="local", mail_claim_seconds=20)
    fine = NotificationsSettings(
        env="local", mail_claim_seconds=30, smtp_timeout_seconds=5, smtp_accept_timeout_seconds=6
    )
    assert fine.mail_claim_seconds > fine.email_worst_seconds == 29


def test_only_the_gateway_listens_beyond_loopback_by_default() -> None:
    s = KitSettings(env="local")
    assert s.bind_host_of("gateway") == "0.0.0.0"
    for service in ("users", "wallets", "transactions", "payment_gateway", "notifications"):
        assert s.bind_host_of(service) == "127.0.0.1"
    assert KitSettings(env="local", bind_host="10.0.0.5").bind_host_of("wallets") == "10.0.0.5"


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("abc-123:x.y_z", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("a\x85b", False),
        ("a b", False),
        ("a\nb", False),
        ("abc\n", False),
    ],
)
def test_request_ids_are_kept_only_in_the_safe_alphabet(raw: str, kept: bool) -> None:
    assert safe_request_id(raw) == (raw if kept else None)


def test_ipv6_clients_are_limited_per_64_and_ipv4_per_address() -> None:
    assert ip_identity("2001:db8:1:2:aaaa::1") == ip_identity("2001:db8:1:2:ffff::9")
    assert ip_identity("2001:db8:1:2::1") != ip_identity("2001:db8:1:3::1")
    assert ip_identity("203.0.113.7") != ip_identity("203.0.113.8")
    assert ip_identity("::ffff:203.0.113.7") == ip_identity("203.0.113.7")


def test_the_request_fingerprint_is_keyed_and_ignores_the_card_number_and_cvc() -> None:
    body = {
        "type": "deposit",
        "amount": "1.00",
        "card": {"number": "4242424242424242", "exp_month": 1, "exp_year": 2030, "cvc": "123"},
    }
    same_last4 = {**body, "card": {**body["card"], "number": "4000000000004242", "cvc": "999"}}
    assert request_hash(body, "k1") == request_hash(same_last4, "k1")
    assert request_hash(body, "k1") != request_hash(body, "k2")
    other_expiry = {**body, "card": {**body["card"], "exp_year": 2031}}
    assert request_hash(body, "k1") != request_hash(other_expiry, "k1")


def test_mail_failures_that_retrying_cannot_fix_are_final() -> None:
    assert classify(ValueError("bad header")).status == "failed"
    assert classify(aiosmtplib.SMTPResponseException(550, "no such user")).status == "failed"
    assert classify(aiosmtplib.SMTPResponseException(451, "later")).status == "retry"
    assert classify(ConnectionRefusedError()).status == "retry"
    assert classify(LookupError("no recipient yet")).status == "retry"


@pytest.mark.parametrize("env", ["production", "staging"])
@pytest.mark.parametrize("field", ["jwt_secret", "internal_token"])
@pytest.mark.parametrize("value", ["", " ", "short-secret", "x" * 31])
def test_empty_or_short_secrets_are_refused_outside_local_and_test(
    env: str, field: str, value: str
) -> None:
    good = {"jwt_secret": "a" * 40, "internal_token": "b" * 40}
    with pytest.raises(ValueError, match=f"PAYSYS_{field.upper()}"):
        KitSettings(env=env, **{**good, field: value})
    assert KitSettings(env="test", **{**good, field: value}).env == "test"


def test_a_short_data_key_index_key_is_refused_outside_local() -> None:
    from paysys.kit.settings import DataKeySettings

    with pytest.raises(ValueError, match="PAYSYS_BLIND_INDEX_KEY"):
        DataKeySettings(
            jwt_secret="a" * 40,
            internal_token="b" * 40,
            data_keys="k9:" + "c" * 44,
            blind_index_key="",
        )


def test_mail_failure_reasons_never_carry_an_address() -> None:
    refused = aiosmtplib.SMTPRecipientRefused(
        550, "<bob@example.com>: no such user", "bob@example.com"
    )
    reason = classify(aiosmtplib.SMTPRecipientsRefused([refused])).error
    assert reason and "550" in reason and "bob@example.com" not in reason
    reason = classify(aiosmtplib.SMTPResponseException(450, "jörg@bücher.example busy")).error
    assert reason and "jörg" not in reason and "bücher" not in reason


def test_every_development_secret_is_refused_outside_local_and_fault_hooks_too() -> None:
    # Issue 20.13: not only the JWT secret. Each service's settings with every secret
    # set but one: that one is named.
    from paysys.kit.settings import DataKeySettings

    good = {
        "jwt_secret": "a" * 40,
        "internal_token": "b" * 40,
        "idempotency_hash_key": "c" * 40,
        "data_keys": "k9:" + "A" * 43 + "=",
        "blind_index_key": "B" * 43 + "=",
    }
    for cls, names in (
        (KitSettings, ("jwt_secret", "internal_token")),
        (TransactionsSettings, ("jwt_secret", "internal_token", "idempotency_hash_key")),
        (DataKeySettings, ("jwt_secret", "internal_token", "data_keys", "blind_index_key")),
    ):
        values = {k: good[k] for k in names}
        assert cls(env="production", **values).env == "production"  # type: ignore[arg-type]
        for name in names:
            dev = cls.DEV_SECRETS[name]
            with pytest.raises(ValueError, match=f"PAYSYS_{name.upper()}"):
                cls(env="production", **{**values, name: dev})  # type: ignore[arg-type]
