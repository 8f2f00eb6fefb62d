"""Personal data at rest: emails and names are sealed (AES-GCM) in PostgreSQL wherever a
service keeps them, found by a blind index, and re-sealed under a new key while the
system runs."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx

from paysys.cli import ROOT
from tests.conftest import Stack, eventually
from tests.e2e.helpers import PASSWORD, assert_problem, bearer, login, mails_to, register
from tests.e2e.money import db_fetch, deposit, wallet_for


async def stored_rows(stack: Stack) -> list[str]:
    rows = []
    for table in ("users.users", "notifications.recipients", "notifications.email_jobs"):
        rows += [r["row"] for r in await db_fetch(stack, f"SELECT t::text AS row FROM {table} t")]
    return rows


async def test_emails_and_names_are_sealed_at_rest_and_found_case_blind(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    tag = uuid.uuid4().hex[:10]
    email, name = f"Sealed.{tag}@example.com", f"Ada Sealed {tag}"
    user = await register(api, email, full_name=name)
    assert (user["email"], user["full_name"]) == (email, name)

    async def recipient_known() -> bool:
        rows = await db_fetch(
            stack,
            "SELECT 1 FROM notifications.recipients WHERE user_id = $1",
            uuid.UUID(user["id"]),
        )
        return bool(rows)

    await eventually(recipient_known, timeout=60)
    for row in await stored_rows(stack):
        assert tag not in row.lower()  # neither the address nor the name, in any case
    # found by its blind index: login and uniqueness ignore case
    tokens = await login(api, email.lower())
    me = (await api.get("/users/me", headers=bearer(tokens["access_token"]))).json()
    assert (me["email"], me["full_name"]) == (email, name)
    again = await api.post(
        "/users/register", json={"email": email.upper(), "password": PASSWORD, "full_name": "X"}
    )
    assert_problem(again, 409, "EMAIL_TAKEN")


async def test_rotation_reseals_everything_under_the_new_key_while_the_system_runs(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    before = await register(api)
    tokens = await login(api, before["email"])
    auth = bearer(tokens["access_token"])
    wallet = await wallet_for(api, auth)

    async def recipient_known() -> bool:
        return bool(
            await db_fetch(
                stack,
                "SELECT 1 FROM notifications.recipients WHERE user_id = $1",
                uuid.UUID(before["id"]),
            )
        )

    await eventually(recipient_known, timeout=60)
    # The rows that exist when the rotation starts must all end under the new key; rows
    # the running services write meanwhile (other tests' users) are theirs to seal.
    existing = await db_fetch(
        stack,
        "SELECT 'users' AS t, id AS row_id FROM users.users"
        " UNION ALL SELECT 'recipients', user_id FROM notifications.recipients",
    )
    assert ("users", uuid.UUID(before["id"])) in {(r["t"], r["row_id"]) for r in existing}
    env = {**stack.infra.env, "PAYSYS_DATA_KEY_ID": "test2"}
    for service in ("users", "notifications"):
        done = subprocess.run(
            [sys.executable, "-m", "paysys.cli", "rotate-keys", service],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    keys = {
        (r["t"], r["row_id"]): r["key_id"]
        for r in await db_fetch(
            stack,
            "SELECT 'users' AS t, id AS row_id, key_id FROM users.users UNION ALL"
            " SELECT 'recipients', user_id, key_id FROM notifications.recipients",
        )
    }
    assert {keys[(r["t"], r["row_id"])] for r in existing} == {"test2"}
    # the running services (which know both keys) read and use what was re-sealed
    me = (await api.get("/users/me", headers=auth)).json()
    assert me["email"] == before["email"]
    assert (await login(api, before["email"]))["user"]["id"] == before["id"]
    assert (await deposit(api, auth, wallet["id"], "3.00")).status_code == 201

    async def confirmation() -> list[object]:
        return [
            m
            for m in mails_to(stack.infra.mail_dir, before["email"])
            if "deposit" in m["Subject"]  # type: ignore[index]
        ]

    await eventually(confirmation, timeout=60)
