"""The security suite's own tests: what an attacker with an account of their own tries
against someone else's money, forged tokens of every kind, and where password hashes go.
(The rest of the suite lives beside the feature it guards; docs/security.md lists every
test by the threat it answers.)"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from paysys.kit.mongo import make_mongo
from paysys.kit.settings import DEV_JWT_SECRET
from tests.conftest import Stack
from tests.e2e.helpers import (
    PASSWORD,
    assert_problem,
    bearer,
    kafka_events,
    login,
    register,
    user_with_token,
)
from tests.e2e.money import balance, db_fetch, deposit, funded_user, move


async def test_no_route_reads_or_moves_another_users_wallet_or_transaction(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    victim, victim_auth, victim_wallet = await funded_user(api, "100.00")
    _, _, victim_friend_wallet = await funded_user(api, "0")
    sent = await move(
        api,
        victim_auth,
        "transfer",
        victim_wallet["id"],
        victim_friend_wallet["id"],
        "10.00",
        description="rent",
    )
    assert sent.status_code == 201, sent.text
    _, attacker_auth, attacker_wallet = await funded_user(api, "5.00")

    # The ids as an attacker could learn them: from the events on Kafka.
    [event] = await kafka_events(
        stack,
        "wallet.funds_deducted",
        victim_wallet["id"],
        1,
        where=lambda e: e["data"]["transaction_id"] == sent.json()["id"],
    )
    victim_wallet_id, victim_tx_id = event["data"]["wallet_id"], event["data"]["transaction_id"]
    assert event["data"]["user_id"] == victim["id"]

    # Reading
    assert_problem(
        await api.get(f"/transactions/{victim_tx_id}", headers=attacker_auth),
        404,
        "TRANSACTION_NOT_FOUND",
    )
    assert_problem(
        await api.get(f"/wallets/{victim_wallet_id}", headers=attacker_auth),
        404,
        "WALLET_NOT_FOUND",
    )
    listed = await api.get(
        "/transactions", params={"wallet_id": victim_wallet_id}, headers=attacker_auth
    )
    assert listed.status_code == 200 and listed.json()["items"] == []
    # Changing
    for action in ("deactivate", "activate"):
        assert_problem(
            await api.post(f"/wallets/{victim_wallet_id}/{action}", headers=attacker_auth),
            404,
            "WALLET_NOT_FOUND",
        )
    # Moving: out of the victim's wallet by transfer or payment, or a deposit the attacker
    # charges to a card but credits to the victim (a laundering path)
    for kind in ("transfer", "payment"):
        resp = await move(api, attacker_auth, kind, victim_wallet_id, attacker_wallet["id"], "1.00")
        assert_problem(resp, 404, "WALLET_NOT_FOUND")
    assert_problem(
        await deposit(api, attacker_auth, victim_wallet_id, "1.00"), 404, "WALLET_NOT_FOUND"
    )
    # The victim's idempotency key, with the victim's very body, is the attacker's own
    # key: it neither replays the victim's answer nor moves the victim's money.
    body = {
        "type": "transfer",
        "source_wallet_id": victim_wallet_id,
        "destination_wallet_id": attacker_wallet["id"],
        "amount": "1.00",
    }
    key = {"Idempotency-Key": "victim-key-1"}
    first = await api.post("/transactions/create", json=body, headers={**victim_auth, **key})
    assert first.status_code == 201, first.text
    stolen = await api.post("/transactions/create", json=body, headers={**attacker_auth, **key})
    assert_problem(stolen, 404, "WALLET_NOT_FOUND")
    assert "idempotent-replayed" not in stolen.headers

    assert await balance(api, victim_auth, victim_wallet_id) == "89.00"
    assert await balance(api, attacker_auth, attacker_wallet["id"]) == "6.00"
    # Nothing the attacker sent left a transaction behind on the victim's wallet.
    rows = await db_fetch(
        stack,
        "SELECT type, status FROM transactions.transactions "
        "WHERE source_wallet_id = $1 OR destination_wallet_id = $1",
        uuid.UUID(victim_wallet_id),
    )
    assert sorted((r["type"], r["status"]) for r in rows) == [
        ("deposit", "COMPLETED"),
        ("transfer", "COMPLETED"),
        ("transfer", "COMPLETED"),
    ]


def _rsa_pem() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def _hs256_by_hand(claims: dict[str, object], key: bytes) -> str:
    # PyJWT itself refuses a PEM key as an HMAC secret, so the forger signs by hand.
    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    signature = b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


async def test_tokens_signed_any_other_way_are_refused(api: httpx.AsyncClient) -> None:
    user = await register(api)
    good = (await login(api, user["email"]))["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    private, public = _rsa_pem()
    now = int(time.time())
    forged = {
        # An attacker's own RSA key: a server that trusted the token's `alg` would verify
        # it with a key the token names.
        "RS256 with the attacker's key": jwt.encode(claims, private, algorithm="RS256"),
        # HS/RS confusion: the public key used as an HMAC secret.
        "HS256 keyed with a public key": _hs256_by_hand(claims, public),
        # The right secret but another HMAC: only HS256 is accepted.
        "HS512 with the right secret": jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS512"),
        "no expiry": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, DEV_JWT_SECRET),
        "issued in the future": jwt.encode({**claims, "iat": now + 3600}, DEV_JWT_SECRET),
        "a refresh token as an access token": (await login(api, user["email"]))["refresh_token"],
    }
    for name, token in forged.items():
        resp = await api.get("/users/me", headers=bearer(token))
        assert resp.status_code == 401, name
        assert_problem(resp, 401, "UNAUTHORIZED")
    assert (await api.get("/users/me", headers=bearer(good))).status_code == 200


async def test_password_hashes_are_argon2id_and_never_leave_users(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user, auth = await user_with_token(api)
    [row] = await db_fetch(
        stack,
        "SELECT password_hash FROM users.users WHERE id = $1",
        uuid.UUID(user["id"]),
    )
    hashed = row["password_hash"]
    assert hashed.startswith("$argon2id$"), hashed[:12]
    me = await api.get("/users/me", headers=auth)
    tokens = await api.post("/users/login", json={"email": user["email"], "password": PASSWORD})
    answers = [me.text, tokens.text, json.dumps(user)]
    [event] = await kafka_events(stack, "user.registered", user["id"], 1, linger=0)
    answers.append(json.dumps(event))
    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:
        for name in await db.list_collection_names():
            async for doc in db[name].find({}):
                answers.append(json.dumps(doc, default=str))
    finally:
        await client.close()
    salt_and_hash = hashed.rsplit("$", 2)[-2:]
    for text in answers:
        assert PASSWORD not in text
        for part in salt_and_hash:
            assert part not in text
    # and no other service's tables hold it
    for schema in ("wallets", "transactions", "payment_gateway", "notifications"):
        tables = await db_fetch(
            stack,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
            schema,
        )
        for t in tables:
            for r in await db_fetch(
                stack, f'SELECT t::text AS row FROM "{schema}"."{t["table_name"]}" t'
            ):
                assert salt_and_hash[1] not in r["row"], (schema, t["table_name"])


async def test_tokens_naming_their_own_key_or_another_issuer_are_refused(
    api: httpx.AsyncClient,
) -> None:
    # Issue 20.15: a server that fetched or trusted a key the token names (jwk, jku,
    # kid) would verify a token with the attacker's key; another issuer is not ours.
    user = await register(api)
    claims = jwt.decode(
        (await login(api, user["email"]))["access_token"], options={"verify_signature": False}
    )
    private, public = _rsa_pem()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(serialization.load_pem_public_key(public)))
    forged = {
        "RS256 carrying its own jwk": jwt.encode(
            claims, private, algorithm="RS256", headers={"jwk": jwk}
        ),
        "RS256 naming a jku": jwt.encode(
            claims, private, algorithm="RS256", headers={"jku": "https://attacker.example/k"}
        ),
        "HS256 naming a kid": jwt.encode(
            claims, "attacker-secret-attacker-secret-32b", headers={"kid": "../../dev/null"}
        ),
        "another issuer, right secret": jwt.encode(
            {**claims, "iss": "someone-else"}, DEV_JWT_SECRET
        ),
        "another audience, right secret": jwt.encode(
            {**claims, "aud": "another-api"}, DEV_JWT_SECRET
        ),
    }
    for name, token in forged.items():
        resp = await api.get("/users/me", headers=bearer(token))
        assert resp.status_code == 401, name
        assert_problem(resp, 401, "UNAUTHORIZED")


async def test_a_token_accepted_once_is_refused_once_it_expires(api: httpx.AsyncClient) -> None:
    # The gateway caches tokens it verified: the cache must not outlive `exp`.
    user = await register(api)
    claims = jwt.decode(
        (await login(api, user["email"]))["access_token"], options={"verify_signature": False}
    )
    exp = int(time.time()) + 2
    short = jwt.encode({**claims, "exp": exp, "jti": str(uuid.uuid4())}, DEV_JWT_SECRET)
    assert (await api.get("/users/me", headers=bearer(short))).status_code == 200
    while time.time() <= exp + 1:  # PyJWT has no leeway here: one second past is expired
        await asyncio.sleep(0.2)
    assert_problem(await api.get("/users/me", headers=bearer(short)), 401, "UNAUTHORIZED")


async def test_a_forged_user_id_header_is_ignored_on_wallet_and_transaction_routes(
    api: httpx.AsyncClient,
) -> None:
    victim, victim_auth, victim_wallet = await funded_user(api, "5.00")
    _, auth = await user_with_token(api)
    forge = {"X-User-Id": victim["id"], "X-Internal-Token": "guess"}
    wallets = await api.get("/wallets", headers={**auth, **forge})
    assert wallets.status_code == 200 and wallets.json()["items"] == []
    txs = await api.get("/transactions", headers={**auth, **forge})
    assert txs.status_code == 200 and txs.json()["items"] == []
    theirs = await api.get(f"/wallets/{victim_wallet['id']}", headers={**auth, **forge})
    assert_problem(theirs, 404, "WALLET_NOT_FOUND")
    mine = await api.post("/wallets/create", json={"currency": "EUR"}, headers={**auth, **forge})
    assert mine.status_code == 201 and mine.json()["user_id"] != victim["id"]
    steal = await api.post(
        "/transactions/create",
        json={
            "type": "transfer",
            "source_wallet_id": victim_wallet["id"],
            "destination_wallet_id": mine.json()["id"],
            "amount": "1.00",
        },
        headers={**auth, **forge},
    )
    assert steal.status_code in (400, 403, 404), steal.text
    assert (await api.get(f"/wallets/{victim_wallet['id']}", headers=victim_auth)).json()[
        "balance"
    ] == "5.00"
