"""The mail sender's STARTTLS and AUTH (issue 25.7), against a Mailpit of this module's
own that requires both, and the test relay offering STARTTLS to the pipelining client:
mail goes through only inside verified TLS and with the right password; a server that
does not offer STARTTLS gets neither mail nor password."""

from __future__ import annotations

import base64
import hashlib
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.mime.text import MIMEText
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from paysys.kit.tls import LocalTls, local_tls
from paysys.notifications.settings import NotificationsSettings
from paysys.notifications.smtp import PipelinedSMTP
from paysys.notifications.tasks import MailSender, classify
from paysys_dev import inbox
from paysys_dev.stack import ROOT
from tests.conftest import Infra, free_port
from tests.support.smtp_relay import smtp_relay

SENDER = "no-reply@paysys.local"
USER, PASSWORD = "paysys-mailer", "a mail password of the test's own"


@dataclass(frozen=True)
class SecureMailpit:
    smtp_port: int
    inbox: str
    tls: LocalTls


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTls:
    return local_tls(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture(scope="module")
def mailpit(tls: LocalTls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureMailpit]:
    folder = tmp_path_factory.mktemp("mailpit")
    # htpasswd's {SHA} form, which Mailpit reads: a test's password, no secret to keep
    sha = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    (folder / "smtp-users").write_text(f"{USER}:{{SHA}}{sha}\n")
    smtp_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(ROOT / ".run" / "bin" / "mailpit"),
            "--smtp", f"127.0.0.1:{smtp_port}",
            "--listen", f"127.0.0.1:{http_port}",
            "--database", str(folder / "mailpit.db"),
            "--smtp-tls-cert", str(tls.cert_file),
            "--smtp-tls-key", str(tls.key_file),
            "--smtp-require-starttls",
            "--smtp-auth-file", str(folder / "smtp-users"),
            "--smtp-disable-rdns",
            "--disable-version-check",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "Mailpit did not start"
            time.sleep(0.2)
        yield SecureMailpit(smtp_port, url, tls)
    finally:
        proc.terminate()
        proc.wait(10)


def settings(port: int, **overrides: str) -> NotificationsSettings:
    env = {
        "env": "test",
        "SMTP_HOST": "localhost",
        "SMTP_PORT": str(port),
        "SMTP_STARTTLS": "true",
        "SMTP_USERNAME": USER,
        "SMTP_PASSWORD": PASSWORD,
        **overrides,
    }
    return NotificationsSettings.model_validate(env)


def message(to: str) -> MIMEText:
    msg = MIMEText("inside TLS", "plain", "us-ascii")
    msg["From"], msg["To"], msg["Subject"] = SENDER, to, "secure"
    return msg


def address() -> str:
    return f"secure-{uuid.uuid4().hex[:10]}@example.com"


async def test_the_sender_sends_inside_verified_tls_with_its_password(
    mailpit: SecureMailpit,
) -> None:
    s = settings(mailpit.smtp_port, SMTP_CA_FILE=str(mailpit.tls.ca_file))
    sender = MailSender(None, None, s)  # type: ignore[arg-type]  # send() needs neither
    to = address()
    await sender.send(message(to), to)
    await sender._drop_connection()
    [raw] = inbox.to(mailpit.inbox, to)
    assert raw.rstrip().endswith(b"inside TLS")
    summary = inbox.summaries(mailpit.inbox, f'to:"{to}"')[0]
    assert summary["Username"] == USER  # Mailpit records who authenticated


async def test_a_wrong_password_sends_nothing_and_is_retried_not_given_up(
    mailpit: SecureMailpit,
) -> None:
    s = settings(mailpit.smtp_port, SMTP_CA_FILE=str(mailpit.tls.ca_file), SMTP_PASSWORD="not it")
    sender = MailSender(None, None, s)  # type: ignore[arg-type]
    to = address()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        await sender.send(message(to), to)
    assert classify(refused.value).status == "retry"  # the configuration, not the email
    pipe = PipelinedSMTP("localhost", mailpit.smtp_port, tls=s.smtp_tls(), login=s.smtp_login())
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await pipe.connect()
    assert inbox.to(mailpit.inbox, to) == []


async def test_a_certificate_the_sender_does_not_trust_gets_no_password(
    mailpit: SecureMailpit,
) -> None:
    s = settings(mailpit.smtp_port)  # the system's CAs only: the local CA is not one
    pipe = PipelinedSMTP("localhost", mailpit.smtp_port, tls=s.smtp_tls(), login=s.smtp_login())
    with pytest.raises(ssl.SSLCertVerificationError):
        await pipe.connect()
    sender = MailSender(None, None, s)  # type: ignore[arg-type]
    to = address()
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        await sender.send(message(to), to)
    assert classify(refused.value).status == "retry"
    assert inbox.to(mailpit.inbox, to) == []


async def test_a_server_without_starttls_gets_neither_mail_nor_password(infra: Infra) -> None:
    host, port = infra.mailpit_smtp.rsplit(":", 1)  # the stack's Mailpit: no TLS
    s = settings(int(port), SMTP_HOST=host)
    pipe = PipelinedSMTP(host, int(port), tls=s.smtp_tls(), login=s.smtp_login())
    with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS"):
        await pipe.connect()
    sender = MailSender(None, None, s)  # type: ignore[arg-type]
    to = address()
    with pytest.raises(aiosmtplib.SMTPException):
        await sender.send(message(to), to)
    assert inbox.to(infra.inbox, to) == []


async def test_the_pipelining_client_pipelines_inside_tls(
    infra: Infra, tls: LocalTls, tmp_path: Path
) -> None:
    port = free_port()
    with smtp_relay(port, tmp_path, infra.mailpit_smtp, tls=(tls.cert_file, tls.key_file)):
        ctx = ssl.create_default_context(cafile=str(tls.ca_file))
        pipe = PipelinedSMTP("localhost", port, tls=ctx)
        assert await pipe.connect() is True  # PIPELINING, offered again inside TLS
        try:
            a, b = address(), address()
            mails = [(to, message(to).as_bytes()) for to in (a, b)]
            assert await pipe.send_many(SENDER, mails) == [None, None]
        finally:
            pipe.close()
    assert len(inbox.to(infra.inbox, a)) == len(inbox.to(infra.inbox, b)) == 1


def test_credentials_without_starttls_are_refused_outside_local_mode() -> None:
    key = base64.b64encode(b"k" * 32).decode()
    production = {
        "env": "production",
        "jwt_secret": "j" * 32,
        "internal_token": "i" * 32,
        "data_keys": f"prod1:{key}",
        "data_key_id": "prod1",
        "blind_index_key": key,
    }
    settings(587, **production)  # with STARTTLS: fine
    with pytest.raises(ValueError, match="SMTP_STARTTLS"):
        settings(587, SMTP_STARTTLS="false", **production)
