"""Personal data at rest: emails and names are sealed (AES-GCM) in PostgreSQL wherever a
service keeps them, found by a blind index, and re-sealed under a new key while the
system runs."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx
import pytest
import redis
from cryptography.exceptions import InvalidTag

from paysys.kit.crypto import DEV_BLIND_INDEX_KEY, DEV_DATA_KEYS, cipher_from
from paysys.kit.mongo import make_mongo
from paysys_dev.stack import ROOT
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
            for m in mails_to(stack.infra.inbox, before["email"])
            if "deposit" in m["Subject"]  # type: ignore[index]
        ]

    await eventually(confirmation, timeout=60)


async def test_sealed_values_open_only_under_their_own_row_and_never_repeat(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # Issue 20.14: not "the plain string is absent" (a base64 copy would pass that), but
    # each sealed value opens, under the key and with its own row's associated data, to
    # the person's data; swapped between rows it does not open; the same name sealed
    # twice gives two ciphertexts.
    tag = uuid.uuid4().hex[:10]
    name = f"Twin Name {tag}"
    a = await register(api, f"a.{tag}@example.com", full_name=name)
    b = await register(api, f"b.{tag}@example.com", full_name=name)
    cipher = cipher_from(
        stack.infra.env["PAYSYS_DATA_KEYS"], DEV_DATA_KEYS.split(":", 1)[0], DEV_BLIND_INDEX_KEY
    )
    rows = {
        str(r["id"]): r
        for r in await db_fetch(
            stack,
            "SELECT id, email_sealed, full_name_sealed, key_id FROM users.users"
            " WHERE id = ANY($1::uuid[])",
            [uuid.UUID(a["id"]), uuid.UUID(b["id"])],
        )
    }
    ra, rb = rows[a["id"]], rows[b["id"]]
    assert cipher.open(ra["email_sealed"], ra["key_id"], f"users.email:{a['id']}") == a["email"]
    assert cipher.open(rb["full_name_sealed"], rb["key_id"], f"users.full_name:{b['id']}") == name
    assert ra["full_name_sealed"] != rb["full_name_sealed"]  # a fresh nonce each time
    with pytest.raises(InvalidTag):  # a's ciphertext in b's row: refused, not misread
        cipher.open(ra["email_sealed"], rb["key_id"], f"users.email:{b['id']}")
    with pytest.raises(InvalidTag):
        cipher.open(ra["full_name_sealed"], ra["key_id"], f"users.email:{a['id']}")


async def test_an_address_is_nowhere_but_sealed_once_the_system_settles(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # Issue 20.14: the MongoDB audit log, the outboxes once drained, every service's
    # log and Redis, searched for the address in any letter case (the notifications
    # collection keeps it, as the contract says).
    tag = uuid.uuid4().hex[:12]
    email = f"Findme.{tag}@example.com"
    user = await register(api, email)
    tokens = await login(api, email)
    await api.get("/users/me", headers=bearer(tokens["access_token"]))

    async def welcomed() -> list[object]:
        return mails_to(stack.infra.inbox, email)

    await eventually(welcomed, timeout=60)

    async def drained() -> bool:
        left = await db_fetch(
            stack,
            "SELECT (SELECT count(*) FROM users.outbox) + (SELECT count(*) FROM"
            " users.records_outbox) + (SELECT count(*) FROM notifications.records_outbox) AS n",
        )
        return left[0]["n"] == 0

    await eventually(drained, timeout=60)
    needle = tag.lower()
    for table in ("users.outbox", "users.records_outbox", "notifications.records_outbox"):
        for r in await db_fetch(stack, f"SELECT t::text AS row FROM {table} t"):
            assert needle not in r["row"].lower(), table
    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:
        audits = [d async for d in db.audit_log.find({"actor_user_id": user["id"]})]
        assert audits, "the registration and login are audited"
        for doc in [d async for d in db.audit_log.find({})]:
            assert needle not in json.dumps(doc, default=str).lower()
    finally:
        await client.close()
    for log in stack.log_dir.glob("*.log"):
        assert needle not in log.read_text(errors="replace").lower(), log.name
    store = redis.Redis.from_url(stack.infra.redis_url)
    try:
        for key in store.scan_iter(count=1000):
            assert needle not in key.decode(errors="replace").lower()
            kind = store.type(key)
            if kind == b"string":
                value = store.get(key) or b""
            elif kind == b"hash":
                value = json.dumps(
                    {k.decode(): v.decode(errors="replace") for k, v in store.hgetall(key).items()}
                ).encode()
            else:
                continue
            assert needle not in value.decode(errors="replace").lower(), key
    finally:
        store.close()
