"""`make chaos`: a bounded, seeded random workload through the gateway while a fault
injector breaks the system in turn; then every money and delivery invariant is checked.

Starts the six processes on chaos ports against a fresh database (the infrastructure
must be up: `make chaos` does that). Workload (from `--clients` keep-alive clients):
registrations and logins, refreshes, deposits with every test card, transfers and
payments among a small set of hot wallets, deactivations and reactivations, retries
with the same Idempotency-Key (same body, and another body) and concurrent duplicates.
Faults, one after another: SIGKILL and restart of each of the six processes, a Kafka
restart, Redis, the MongoDB-wire server and the SMTP sink stopped and started, and a
service paused (SIGSTOP) for longer than a saga lease.

Then it waits out the recovery window and checks, printing a line each: money
conserved, every balance equal to its ledger and not negative, nothing left in flight,
one terminal event and one transaction log per transaction, its emails, every answer the
clients saw reflected in the data, one transaction per idempotency key, no email sent
twice. It prints the seed (a failing run replays with `--seed`), the counts of
operations, faults and violations, and for each fault how long clients saw errors.
Exit status 1 on any violation. Writes docs/reliability.md (not with --smoke).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import hashlib
import hmac
import http.server
import json
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from invariants import (  # bench/ is the script's folder
    WALLET_TOPICS,
    CardRefund,
    Charge,
    HoldRow,
    Leg,
    Spend,
    Tx,
    WalletEvent,
    emails_sent_once,
    events_in_commit_order,
    events_match_ledger,
    holds_match,
    legs_match_outcomes,
    limits_held,
    money_conserved,
    one_answer_per_key,
    run_messages,
)
from isolated import NOTIFIED_TOPICS, Isolated, free_ports, isolated, stop_on_sigterm
from paysys_dev import inbox
from paysys_dev.fleet import Fleet
from paysys_dev.stack import ROOT, SERVICES, STACK, wait_ready
from reports import write_section

# Below the ephemeral range (32768+): a port polled before its service listens can
# otherwise be picked as the source port of the poll itself, a TCP self-connect.
PORTS = free_ports(SERVICES)  # this run's, drawn at random
GATEWAY = f"http://127.0.0.1:{PORTS['gateway']}"
GOOD_CARD = "4242424242424242"
CARDS = [GOOD_CARD] * 6 + [
    "4000000000000002",
    "4000000000009995",
    "4000000000000069",
    "4000000000000119",
]
PASSWORD = "chaos-password"


@dataclass
class Person:
    email: str
    user_id: str
    auth: dict[str, str]
    refresh: str
    wallet: str
    merchant: bool = False


@dataclass
class Seen:
    """What one client-visible call answered."""

    op: str
    status: int  # 0: no answer (connection refused or reset)
    tx_id: str | None = None
    key: str | None = None
    user_id: str | None = None
    at: float = field(default_factory=time.monotonic)  # when the answer came
    began: float = 0.0  # when the call was sent
    said: str | None = None  # what it said: an error's code, a success's transaction status
    batch_key: str | None = None  # an item of a bulk answer: the bulk request's key


# The operations that need a component: a fault's window closes at the first success of
# one of them (an answer from some other service proves nothing about the faulted one).
MONEY_OPS = frozenset({"tx", "bulk", "refund", "auth", "capture", "void"})
ALL_OPS = (
    frozenset(
        {"register", "login", "refresh", "wallet", "activate", "deactivate", "limits", "webhook"}
    )
    | MONEY_OPS
)
NEEDS: dict[str, frozenset[str]] = {
    "users": frozenset({"register", "login", "refresh"}),
    "wallets": frozenset({"wallet", "activate", "deactivate", "limits"}) | MONEY_OPS,
    "transactions": MONEY_OPS,
    "payment_gateway": frozenset({"tx", "refund"}),
    "notifications": frozenset({"webhook"}),
}


@dataclass
class FaultRecord:
    name: str
    at: float
    recovered_at: float | None = None
    errors: int = 0  # calls answered 5xx or not at all, from the fault to its recovery

    @property
    def needs(self) -> frozenset[str]:
        return NEEDS.get(self.name.split(":", 1)[1].split("#")[0], ALL_OPS)


@dataclass
class World:
    rng: random.Random
    people: list[Person] = field(default_factory=list)
    merchants: list[Person] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    not_json: int = 0  # answers whose body was not JSON (every error must be problem+json)
    # Completed transactions and who received them (who may refund them), newest last.
    received: list[tuple[str, Person]] = field(default_factory=list)
    by_wallet: dict[str, Person] = field(default_factory=dict)
    # Per bulk Idempotency-Key, every distinct list of transactions its 200s named.
    batch_answers: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)
    # Authorizations answered 201 (AUTHORIZED): (transaction, payer, merchant).
    authorizations: list[tuple[str, Person, Person]] = field(default_factory=list)
    # Webhooks: each person's endpoint secret (by user id), and what the receiver got.
    hooks: dict[str, str] = field(default_factory=dict)
    hook_base: str = ""
    hooked: set[tuple[str, str]] = field(default_factory=set)  # (user id, event id)
    bad_signatures: int = 0
    unverifiable: int = 0  # deliveries to endpoints whose secret the client never got
    began: float = field(default_factory=time.monotonic)  # the run's start, for reports

    def recovery(self, f: FaultRecord) -> float | None:
        """When the first success came of a call that needs the faulted component, sent
        after the fault (one already past the faulted process proves nothing)."""
        return next(
            (
                s.at
                for s in self.seen
                if s.began > f.at and s.op in f.needs and 200 <= s.status < 300
            ),
            None,
        )


class Stack:
    """The processes of this run, behind HAProxy with --instances N > 1, each one
    restartable; a killed process is replaced as under `make run` (by its warm spare
    with one instance)."""

    def __init__(self, env: dict[str, str], logs: Path, instances: int) -> None:
        self.fleet = Fleet(dict.fromkeys(SERVICES, env), PORTS, logs, logs, instances)

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.fleet.procs

    def start_all(self) -> None:
        self.fleet.start()
        wait_ready(self.fleet.ready_urls(), 120, self.fleet.procs)
        wait_ready({"gateway": GATEWAY}, 60)
        self.fleet.warm_spares()

    def kill_and_restart(self, *names: str) -> None:
        for name in names:
            self.fleet.kill(name)
        for name in names:
            self.fleet.restart(name)
        wait_ready({n: self.fleet.url(n) for n in names}, 120, self.fleet.procs)

    def stop(self) -> None:
        self.fleet.stop()


async def call(
    session: aiohttp.ClientSession,
    world: World,
    op: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    key: str | None = None,
    user_id: str | None = None,
) -> tuple[int, Any]:
    began = time.monotonic()
    try:
        async with session.request(method, GATEWAY + path, json=body, headers=headers or {}) as r:
            status = r.status
            try:
                payload = await r.json(content_type=None) if r.status != 204 else None
            except ValueError:  # not JSON: counted, and a problem+json check's finding
                payload = None
                world.not_json += 1
    except (aiohttp.ClientError, TimeoutError):
        status, payload = 0, None
        await asyncio.sleep(0.2)  # the gateway is down: a client waits a moment, no spin
    if status in (429, 503):
        await asyncio.sleep(0.2)  # as a client would: back off before the next call
    tx_id = None
    if isinstance(payload, dict):
        tx_id = payload.get("transaction_id") or (
            payload.get("id") if op in ("tx", "refund", "auth", "capture", "void") else None
        )
    said = None
    if isinstance(payload, dict):
        said = payload.get("code") if status >= 400 else payload.get("status")
    world.seen.append(Seen(op, status, tx_id, key, user_id, began=began, said=said))
    return status, payload


async def new_person(session: aiohttp.ClientSession, world: World, merchant: bool) -> None:
    email_addr = f"chaos-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email_addr, "password": PASSWORD, "full_name": "Chaos Monkey"}
    if merchant:
        body["account_type"] = "merchant"
    status, user = await call(session, world, "register", "POST", "/users/register", body)
    if status != 201:
        return
    status, tokens = await call(
        session, world, "login", "POST", "/users/login", {"email": email_addr, "password": PASSWORD}
    )
    if status != 200:
        return
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    status, wallet = await call(session, world, "wallet", "POST", "/wallets/create", {}, auth)
    if status != 201:
        return
    if not merchant and world.rng.random() < 0.5:
        # Limits low enough for the workload to meet them (transfers up to 60.00); the
        # check reads back what the database kept, whatever this call's answer.
        limits = {
            "per_transaction": "45.00",
            "daily": f"{world.rng.choice([80, 150, 300])}.00",
            "monthly": "600.00",
        }
        path = f"/wallets/{wallet['id']}/limits"
        await call(session, world, "limits", "PUT", path, limits, auth)
    if world.hook_base:
        # Everyone's own system: the transactions they take part in, signed.
        body = {"url": f"{world.hook_base}/{user['id']}", "events": list(TERMINAL_TOPICS)}
        status, hook = await call(session, world, "webhook", "POST", "/webhooks", body, auth)
        if status == 201:
            world.hooks[user["id"]] = hook["secret"]
    person = Person(email_addr, user["id"], auth, tokens["refresh_token"], wallet["id"], merchant)
    (world.merchants if merchant else world.people).append(person)
    world.by_wallet[wallet["id"]] = person


async def relogin(session: aiohttp.ClientSession, world: World, who: Person) -> None:
    """What a client does when its session is gone: log in again."""
    status, tokens = await call(
        session, world, "login", "POST", "/users/login", {"email": who.email, "password": PASSWORD}
    )
    if status == 200:
        who.auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        who.refresh = tokens["refresh_token"]


def tx_body(world: World, kind: str, who: Person) -> dict[str, Any]:
    rng = world.rng
    if kind == "deposit":
        card = {"number": rng.choice(CARDS), "exp_month": 12, "exp_year": 2099, "cvc": "123"}
        amount = f"{rng.randint(100, 20000) / 100:.2f}"
        return {
            "type": "deposit",
            "destination_wallet_id": who.wallet,
            "amount": amount,
            "card": card,
        }
    pool = world.merchants if kind == "payment" and rng.random() < 0.9 else world.people
    other = rng.choice([p for p in pool if p is not who] or [who])
    amount = f"{rng.randint(1, 6000) / 100:.2f}"
    return {
        "type": kind,
        "source_wallet_id": who.wallet,
        "destination_wallet_id": other.wallet,
        "amount": amount,
    }


async def one_op(session: aiohttp.ClientSession, world: World) -> None:
    rng = world.rng
    roll = rng.random()
    if roll < 0.04 or len(world.people) < 4:
        await new_person(session, world, merchant=rng.random() < 0.2 and len(world.merchants) < 4)
        return
    who = rng.choice(world.people)
    if roll < 0.08:
        status, tokens = await call(
            session, world, "refresh", "POST", "/users/refresh", {"refresh_token": who.refresh}
        )
        if status == 200:
            who.refresh = tokens["refresh_token"]
            who.auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        elif status == 401:
            await relogin(session, world, who)
        return
    if roll < 0.11:
        action = rng.choice(["deactivate", "activate", "activate"])
        await call(
            session, world, action, "POST", f"/wallets/{who.wallet}/{action}", None, who.auth
        )
        return
    if roll < 0.14:
        await bulk(session, world, who)
        return
    if roll < 0.18 and world.received:
        await refund(session, world)
        return
    if roll < 0.21 and world.merchants:
        await authorize(session, world, who)
        return
    if roll < 0.24 and world.authorizations:
        await capture_or_void(session, world)
        return
    kind = rng.choices(["deposit", "transfer", "payment"], weights=[25, 55, 20])[0]
    if kind == "payment" and not world.merchants:
        kind = "transfer"
    body = tx_body(world, kind, who)
    style = rng.random()
    key = f"chaos-{uuid.uuid4().hex}" if style < 0.6 else None
    headers = {**who.auth, **({"Idempotency-Key": key} if key else {})}
    uid = who.user_id
    if key and style < 0.12:
        # concurrent duplicates: one moves money, the other waits or replays
        await asyncio.gather(
            *(
                call(session, world, "tx", "POST", "/transactions/create", body, headers, key, uid)
                for _ in range(2)
            )
        )
        return
    status, out = await call(
        session, world, "tx", "POST", "/transactions/create", body, headers, key, uid
    )
    if status == 201 and isinstance(out, dict):
        receiver = who if kind == "deposit" else world.by_wallet.get(body["destination_wallet_id"])
        if receiver is not None:
            world.received.append((out["id"], receiver))
    if status == 401:
        await relogin(session, world, who)
        return
    if key and style < 0.3:
        # a retry with the same key: the same body replays, another body is refused
        again = body if rng.random() < 0.7 else {**body, "description": "another body"}
        await call(session, world, "tx", "POST", "/transactions/create", again, headers, key, uid)


async def authorize(session: aiohttp.ClientSession, world: World, who: Person) -> None:
    """A manual-capture payment to a merchant, living 2 to 12 s: captured, voided, or
    left to expire (the recovery worker voids it) while the faults go on."""
    rng = world.rng
    merchant = rng.choice(world.merchants)
    body = {
        **tx_body(world, "payment", who),
        "destination_wallet_id": merchant.wallet,
        "capture": "manual",
        "authorization_ttl_seconds": rng.randint(2, 12),
    }
    key = f"chaos-auth-{uuid.uuid4().hex}" if rng.random() < 0.5 else None
    headers = {**who.auth, **({"Idempotency-Key": key} if key else {})}
    # a keyed one is sent again now and then, as a client unsure of the first would
    for _ in range(2 if key and rng.random() < 0.3 else 1):
        status, out = await call(
            session, world, "auth", "POST", "/transactions/create", body, headers, key, who.user_id
        )
        if status == 201 and isinstance(out, dict):
            world.authorizations.append((out["id"], who, merchant))
        elif status == 401:
            await relogin(session, world, who)
            return


async def capture_or_void(session: aiohttp.ClientSession, world: World) -> None:
    """On a recent authorization: the merchant captures all or part of it, the payer or
    the merchant voids it, or a capture and a void race (one wins, the other is 409)."""
    rng = world.rng
    tx_id, payer, merchant = rng.choice(world.authorizations[-50:])
    amount = {} if rng.random() < 0.5 else {"amount": f"{rng.randint(1, 500) / 100:.2f}"}

    async def step(name: str, who: Person, body: dict[str, str]) -> None:
        key = f"chaos-{name}-{uuid.uuid4().hex}" if rng.random() < 0.5 else None
        headers = {**who.auth, **({"Idempotency-Key": key} if key else {})}
        path = f"/transactions/{tx_id}/{name}"
        status, _ = await call(session, world, name, "POST", path, body, headers, key, who.user_id)
        if status == 200 and name == "capture":
            world.received.append((tx_id, merchant))  # refundable by the merchant now
        elif status == 401:
            await relogin(session, world, who)

    choice = rng.random()
    if choice < 0.45:
        await step("capture", merchant, amount)
    elif choice < 0.8:
        await step("void", rng.choice([payer, merchant]), {})
    else:
        await asyncio.gather(step("capture", merchant, amount), step("void", payer, {}))


async def refund(session: aiohttp.ClientSession, world: World) -> None:
    """A refund of a recent completed transaction by whoever received it: in full or in
    part, keyed or not, back to the sender's wallet or (a deposit) to the card."""
    rng = world.rng
    tx_id, who = rng.choice(world.received[-200:])
    body = {} if rng.random() < 0.4 else {"amount": f"{rng.randint(1, 3000) / 100:.2f}"}
    key = f"chaos-refund-{uuid.uuid4().hex}" if rng.random() < 0.5 else None
    headers = {**who.auth, **({"Idempotency-Key": key} if key else {})}
    for _ in range(2 if key and rng.random() < 0.3 else 1):
        status, _ = await call(
            session,
            world,
            "refund",
            "POST",
            f"/transactions/{tx_id}/refund",
            body,
            headers,
            key,
            who.user_id,
        )
        if status == 401:
            await relogin(session, world, who)
            return


async def bulk(session: aiohttp.ClientSession, world: World, who: Person) -> None:
    """POST /transactions/batch of 2 to 20 transfers and payments, keyed or not, replayed
    now and then. Each item answered counts as a transaction answer of its own."""
    rng = world.rng
    items = [
        tx_body(world, "payment" if world.merchants and rng.random() < 0.3 else "transfer", who)
        for _ in range(rng.randint(2, 20))
    ]
    items = [i for i in items if i["destination_wallet_id"] != who.wallet]
    if not items:
        return
    key = f"chaos-bulk-{uuid.uuid4().hex}" if rng.random() < 0.6 else None
    headers = {**who.auth, **({"Idempotency-Key": key} if key else {})}
    for _ in range(2 if key and rng.random() < 0.3 else 1):
        status, out = await call(
            session, world, "bulk", "POST", "/transactions/batch", {"items": items}, headers, key
        )
        if status == 401:
            await relogin(session, world, who)
            return
        if status != 200 or not isinstance(out, dict):
            continue
        for t in out["items"]:
            answer = 201 if t["status"] == "COMPLETED" else 400
            world.seen.append(
                Seen(
                    "tx",
                    answer,
                    t["id"],
                    None,
                    who.user_id,
                    began=time.monotonic(),
                    batch_key=key or "none",
                )
            )
        if key:
            world.batch_answers.setdefault(key, set()).add(tuple(t["id"] for t in out["items"]))


# -- faults


def stack_cmd(*args: str) -> None:
    subprocess.run(["bash", str(STACK), *args], check=True, cwd=ROOT, capture_output=True)


async def inject(stack: Stack, world: World, name: str, lease: float) -> None:
    loop = asyncio.get_running_loop()
    world.faults.append(FaultRecord(name, time.monotonic()))
    kind, _, target = name.partition(":")
    if kind == "kill":  # one process: `wallets`, or one instance `wallets#0`
        await loop.run_in_executor(None, stack.kill_and_restart, target)
    elif kind == "killall":  # every instance of one service at once
        await loop.run_in_executor(None, stack.kill_and_restart, *stack.fleet.names(target))
    elif kind == "pause":
        proc = stack.procs[target]
        os.kill(proc.pid, signal.SIGSTOP)
        await asyncio.sleep(lease + 3)  # outlasts a saga lease: recovery may take over
        os.kill(proc.pid, signal.SIGCONT)
    else:  # restart: infrastructure down, a few seconds, up
        await loop.run_in_executor(None, stack_cmd, "down", target)
        await asyncio.sleep(3)
        await loop.run_in_executor(None, stack_cmd, "up", target)


async def injector(
    stack: Stack, world: World, faults: list[str], every: float, lease: float, done: asyncio.Event
) -> None:
    for name in faults:
        try:
            await asyncio.wait_for(done.wait(), every)
            return
        except TimeoutError:
            pass
        await inject(stack, world, name, lease)


# -- checks


async def consumer_lag(kafka: str, group: str, topics: list[str]) -> int:
    """How many events of `topics` the consumer group has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        described = await admin.describe_topics(topics)
        partitions = [
            TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
        ]
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        ends = await consumer.end_offsets(partitions)
        return sum(
            end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
            for tp, end in ends.items()
        )
    finally:
        await consumer.stop()
        await admin.close()


def serve_hooks(world: World) -> http.server.ThreadingHTTPServer:
    """The users' own systems: one HTTP receiver (in a thread: it outlives the workload's
    event loop, through settle), which checks each delivery's signature and records
    (user, event id)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            user = self.path.strip("/")
            secret = world.hooks.get(user, "")
            parts = dict(
                p.split("=", 1)
                for p in self.headers.get("Paysys-Signature", "").split(",")
                if "=" in p
            )
            mac = hmac.new(secret.encode(), f"{parts.get('t')}.".encode() + body, hashlib.sha256)
            if not secret:
                # Its endpoint was made, but the answer with the secret never reached the
                # client (a gateway killed meanwhile): nothing to verify with, and its
                # events are not among those the check expects.
                world.unverifiable += 1
            elif not hmac.compare_digest(mac.hexdigest(), parts.get("v1", "")):
                world.bad_signatures += 1
            world.hooked.add((user, self.headers.get("Paysys-Event-Id", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    world.hook_base = f"http://127.0.0.1:{server.server_address[1]}"
    return server


async def settle(dsn: str, timeout: float, run_stack: Isolated | None = None) -> bool:
    """Waits until nothing is in flight, every outbox and email job has settled, and
    the notifications consumer has taken every event it reads (an email job is made
    only then: an event published at the end, an authorization's expiry, would
    otherwise be checked before its email exists)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        last: dict[str, int] = {}
        while time.monotonic() < deadline:
            # the consumer's lag first: the email jobs it makes are then in `busy`
            lag = await _notified(run_stack) if run_stack is not None else 0
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM transactions.transactions
                           WHERE status IN ('PENDING', 'PROCESSING', 'AUTHORIZED')) AS sagas,
                          (SELECT count(*) FROM transactions.outbox)
                        + (SELECT count(*) FROM transactions.records_outbox)
                        + (SELECT count(*) FROM wallets.outbox)
                        + (SELECT count(*) FROM users.outbox)
                        + (SELECT count(*) FROM notifications.records_outbox) AS outboxes,
                          (SELECT count(*) FROM notifications.email_jobs
                           WHERE status IN ('pending', 'sending')) AS emails,
                          (SELECT count(*) FROM notifications.webhook_deliveries
                           WHERE status = 'pending') AS webhooks"""
            )
            if sum(row.values()) == 0 and lag == 0:
                return True
            waiting = {k: v for k, v in {**row, "consumer lag": lag}.items() if v}
            if waiting != last:
                print(f"chaos settle: waiting on {waiting}", file=sys.stderr, flush=True)
                last = waiting
            await asyncio.sleep(1)
        return False
    finally:
        await conn.close()


async def _notified(run_stack: Isolated) -> int:
    group = run_stack.env["PAYSYS_CONSUMER_GROUP"]
    kafka = run_stack.base["KAFKA_BOOTSTRAP_SERVERS"]
    return await consumer_lag(kafka, group, [run_stack.topic_prefix + t for t in NOTIFIED_TOPICS])


TERMINAL_TOPICS = (
    "transaction.authorized",
    "transaction.completed",
    "transaction.failed",
    "transaction.voided",
)
MONEY_TOPICS = ("payment.processed", "wallet.funds_added", "wallet.funds_deducted")


@dataclass
class KafkaFindings:
    terminal: dict[str, set[tuple[str, str]]]  # per transaction: (event_id, topic)
    card_hits: int  # money events carrying a card number
    # per (topic, wallet): the transactions of its events, in the order Kafka holds them
    wallet_sequences: dict[tuple[str, str], list[str]]
    wallet_events: list[WalletEvent]


async def kafka_events_of_run(kafka: str, prefix: str, ids: set[str]) -> KafkaFindings:
    """Reads the run's events back from Kafka: the terminal events per transaction, card
    data in any money event, and each wallet's events per topic in the order Kafka holds
    them (one key, one partition); a duplicate (the same event_id again) is skipped, as
    a consumer would. It takes every partition's end offset first and reads until it
    has passed them all: never a quiet spell taken for the end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, set[tuple[str, str]]] = collections.defaultdict(set)
    card_hits = 0
    sequences: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    wallet_events: dict[str, WalletEvent] = {}
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            described = await admin.describe_topics(
                [prefix + t for t in TERMINAL_TOPICS + MONEY_TOPICS]
            )
        finally:
            await admin.close()
        partitions = [
            TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
        ]
        if not partitions:
            raise RuntimeError("none of the run's topics exists on the broker")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + 300

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            if time.monotonic() > deadline:
                raise TimeoutError("the run's events could not be read back within 300 s")
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for r in records:
                    value = json.loads(r.value)
                    tx_id = str(value.get("data", {}).get("transaction_id"))
                    if tx_id not in ids:
                        continue
                    topic = r.topic.removeprefix(prefix)
                    if topic in TERMINAL_TOPICS:
                        found[tx_id].add((value["event_id"], topic))
                    if topic in WALLET_TOPICS and value["event_id"] not in wallet_events:
                        wallet = value["data"]["wallet_id"]
                        wallet_events[value["event_id"]] = WalletEvent(
                            topic, wallet, tx_id, value["event_id"]
                        )
                        sequences[(topic, wallet)].append(tx_id)
                    card_hits += _card_hits(r.value.decode(errors="replace"))
    finally:
        await consumer.stop()
    return KafkaFindings(found, card_hits, sequences, list(wallet_events.values()))


def expected_events(tx: Tx) -> list[str]:
    """The transaction.* events one transaction leaves, sorted: its end's, and an
    authorization's first (a manual-capture payment refused at once never was one)."""
    end = [f"transaction.{tx.status.lower()}"]
    if tx.manual and tx.status in ("COMPLETED", "VOIDED", "AUTHORIZED"):
        return sorted({"transaction.authorized", *end})
    return end


# What an answer means for the state its transaction ends in, per operation and status.
ANSWERED: dict[str, dict[int, set[str]]] = {
    "tx": {201: {"COMPLETED"}, 400: {"FAILED"}},
    "refund": {201: {"COMPLETED"}, 400: {"FAILED"}},
    "auth": {201: {"COMPLETED", "VOIDED"}, 400: {"FAILED"}},
    "capture": {200: {"COMPLETED"}},
    "void": {200: {"VOIDED"}},
}


def _card_hits(text: str) -> int:
    """How many of the test card numbers, or a CVC field, the text holds."""
    return sum(text.count(number) for number in set(CARDS)) + text.count('"cvc"')


async def card_data_at_rest(conn: asyncpg.Connection, mongo: Any, logs: Path) -> tuple[int, str]:
    """Card numbers or CVCs anywhere the run left data: every PostgreSQL row, every
    MongoDB document, every log line."""
    where: collections.Counter[str] = collections.Counter()
    tables = await conn.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = "
        "'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    for t in tables:
        name = f'"{t["table_schema"]}"."{t["table_name"]}"'
        async with conn.transaction():
            async for row in conn.cursor(f"SELECT t::text AS row FROM {name} t"):
                where[f"postgres {name}"] += _card_hits(row["row"])
    for collection in await mongo.list_collection_names():
        async for doc in mongo[collection].find({}):
            where[f"mongodb {collection}"] += _card_hits(json.dumps(doc, default=str))
    for log in logs.glob("*.log"):
        where[f"log {log.name}"] += _card_hits(log.read_text(errors="replace"))
    hits = {k: v for k, v in where.items() if v}
    return sum(hits.values()), ", ".join(f"{k}: {v}" for k, v in hits.items())


async def check(
    run_stack: Isolated, logs: Path, world: World, started_at: float
) -> list[tuple[str, int, str]]:
    dsn, db_name, base = run_stack.dsn, run_stack.db_name, run_stack.base
    mongo_url, kafka, mail_inbox = (
        base["MONGODB_URL"],
        base["KAFKA_BOOTSTRAP_SERVERS"],
        base["MAIL_INBOX"],
    )
    conn = await asyncpg.connect(dsn)
    results: list[tuple[str, int, str]] = []
    try:
        txs = {
            str(r["id"]): Tx(
                str(r["id"]),
                r["type"],
                r["status"],
                r["amount"],
                r["currency"],
                str(r["source_wallet_id"]) if r["source_wallet_id"] else None,
                str(r["destination_wallet_id"]) if r["destination_wallet_id"] else None,
                r["captured_amount"] if r["status"] == "COMPLETED" else None,
                r["authorization_expires_at"] is not None,
            )
            for r in await conn.fetch(
                "SELECT id, type, status, amount, currency, source_wallet_id,"
                " destination_wallet_id, captured_amount, authorization_expires_at"
                " FROM transactions.transactions"
            )
        }
        holds = [
            HoldRow(
                str(r["transaction_id"]),
                str(r["wallet_id"]),
                r["amount"],
                r["status"],
                r["captured_amount"],
            )
            for r in await conn.fetch(
                "SELECT transaction_id, wallet_id, amount, status, captured_amount"
                " FROM wallets.holds"
            )
        ]
        held = {
            str(r["id"]): r["held_balance"]
            for r in await conn.fetch("SELECT id, held_balance FROM wallets.wallets")
        }
        results.append(holds_match(txs, holds, held))
        limits = {
            str(r["id"]): (r["limit_per_transaction"], r["limit_daily"], r["limit_monthly"])
            for r in await conn.fetch(
                "SELECT id, limit_per_transaction, limit_daily, limit_monthly"
                " FROM wallets.wallets WHERE limit_per_transaction IS NOT NULL"
                " OR limit_daily IS NOT NULL OR limit_monthly IS NOT NULL"
            )
        }
        spends = [
            Spend(str(r["wallet_id"]), r["amount"], r["day"])
            for r in await conn.fetch(
                # moved transfers and payments (a capture counts as its hold, below) ...
                "SELECT e.wallet_id, -e.amount AS amount,"
                " (e.created_at AT TIME ZONE 'UTC')::date AS day FROM wallets.ledger_entries e"
                " WHERE e.amount < 0 AND e.kind IN ('transfer', 'payment') AND NOT EXISTS"
                " (SELECT 1 FROM wallets.holds h WHERE h.transaction_id = e.transaction_id)"
                # ... and authorizations: held while open, what was captured once captured
                " UNION ALL SELECT h.wallet_id,"
                " CASE WHEN h.status = 'open' THEN h.amount ELSE h.captured_amount END,"
                " (h.created_at AT TIME ZONE 'UTC')::date FROM wallets.holds h"
                " WHERE h.counted AND h.status IN ('open', 'captured')"
            )
        ]
        results.append(limits_held(spends, limits))
        legs = [
            Leg(r["id"], str(r["transaction_id"]), str(r["wallet_id"]), r["amount"])
            for r in await conn.fetch(
                "SELECT id, transaction_id, wallet_id, amount FROM wallets.ledger_entries"
            )
        ]
        charges = [
            Charge(str(r["transaction_id"]), r["amount"], r["currency"], r["status"])
            for r in await conn.fetch(
                "SELECT transaction_id, amount, currency, status FROM payment_gateway.payments"
            )
        ]
        balances = {
            r["currency"]: int(r["total"])
            for r in await conn.fetch(
                "SELECT currency, sum(balance) AS total FROM wallets.wallets GROUP BY currency"
            )
        }
        card_refunds = [
            CardRefund(str(r["refund_id"]), r["amount"], r["currency"], r["status"])
            for r in await conn.fetch(
                "SELECT r.refund_id, r.amount, p.currency, r.status"
                " FROM payment_gateway.card_refunds r"
                " JOIN payment_gateway.payments p ON p.id = r.payment_id"
            )
        ]
        results.append(money_conserved(txs, charges, balances, card_refunds))
        bad = await conn.fetch(
            "SELECT w.id FROM wallets.wallets w LEFT JOIN wallets.ledger_entries e "
            "ON e.wallet_id = w.id GROUP BY w.id, w.balance "
            "HAVING w.balance <> coalesce(sum(e.amount), 0) OR w.balance < 0"
        )
        results.append(("every balance = its ledger, none negative", len(bad), ""))
        stuck = sum(1 for t in txs.values() if t.status in ("PENDING", "PROCESSING", "AUTHORIZED"))
        results.append(("nothing left PENDING, PROCESSING or AUTHORIZED (expired)", stuck, ""))
        kafka_found = await kafka_events_of_run(kafka, run_stack.topic_prefix, set(txs))
        events, kafka_card_hits = kafka_found.terminal, kafka_found.card_hits
        results.append(events_match_ledger(legs, kafka_found.wallet_events))
        results.append(events_in_commit_order(legs, kafka_found.wallet_sequences))
        wrong = [
            t
            for t, tx in txs.items()
            if sorted(topic for _, topic in events.get(t, set())) != expected_events(tx)
        ]
        results.append(
            (
                "one terminal event per transaction (by event_id)",
                len(wrong),
                f"{len(txs)} transactions",
            )
        )
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, tz_aware=True)
        try:
            logged = collections.Counter(
                [
                    d["transaction_id"]
                    async for d in client[db_name].transaction_logs.find({}, {"transaction_id": 1})
                ]
            )
            card_hits, card_where = await card_data_at_rest(conn, client[db_name], logs)
        finally:
            await client.close()
        results.append(
            (
                "no card number or CVC in PostgreSQL, MongoDB, Kafka or any log",
                card_hits + kafka_card_hits,
                (card_where + (f" kafka: {kafka_card_hits}" if kafka_card_hits else ""))
                or "every row, document, money event and log line searched",
            )
        )
        missing_logs = [t for t in txs if logged.get(t) != 1]
        results.append(("one transaction_logs document per transaction", len(missing_logs), ""))
        jobs = collections.Counter(
            str(r["event_id"])
            for r in await conn.fetch(
                "SELECT event_id FROM notifications.email_jobs "
                "WHERE kind <> 'welcome' AND status IN ('sent', 'failed')"
            )
        )
        expect = {"deposit": 1, "transfer": 2, "payment": 2, "refund": 2}
        no_mail = 0
        for t, tx in txs.items():
            # the email goes with the end (an authorization's event tells nobody)
            ids = [e for e, topic in events.get(t, set()) if topic != "transaction.authorized"]
            want = expect[tx.type] if tx.status == "COMPLETED" else 1
            if tx.type == "refund" and tx.destination is None and tx.status == "COMPLETED":
                want = 1  # back to a card: only its sender is told
            if not ids or jobs.get(ids[0], 0) != want:
                no_mail += 1
        results.append(("its emails, each sent or recorded failed", no_mail, ""))
        unreflected: list[str] = []
        for s in world.seen:
            if s.op not in ANSWERED or not s.tx_id:
                continue
            status = txs[s.tx_id].status if s.tx_id in txs else None
            if s.status in ANSWERED[s.op] and status not in ANSWERED[s.op][s.status]:
                unreflected.append(
                    f"{s.op} {s.tx_id} (key {s.key or s.batch_key}) answered {s.status} "
                    f"{s.said or ''} "
                    f"{s.at - world.began:.1f} s in, ends {status}, after "
                    + next(
                        (
                            f"{f.name} ({s.at - f.at:.1f} s)"
                            for f in reversed(world.faults)
                            if f.at <= s.at
                        ),
                        "no fault",
                    )
                )
        results.append(
            (
                "every answer the clients saw is the transaction's state",
                len(unreflected),
                "; ".join(unreflected[:5]),
            )
        )
        results.append(legs_match_outcomes(txs, legs))
        results.append(
            one_answer_per_key(
                (s.user_id, s.op, s.key, s.status, s.said, s.tx_id)
                for s in world.seen
                if s.op in ANSWERED
            )
        )
        dup_keys = await conn.fetchval(
            "SELECT count(*) FROM (SELECT initiator_user_id, idempotency_key FROM "
            "transactions.transactions WHERE idempotency_key IS NOT NULL "
            "GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        results.append(("one transaction per idempotency key", int(dup_keys), ""))
        changed = sum(1 for answers in world.batch_answers.values() if len(answers) > 1)
        results.append(("a bulk key's every answer names the same transactions", changed, ""))
        results.append(
            ("every answer with a body is JSON (errors problem+json)", world.not_json, "")
        )
        owner = {w: p.user_id for w, p in world.by_wallet.items()}
        want = {
            (user, event_id)
            for t, tx in txs.items()
            for user in {owner.get(tx.source or ""), owner.get(tx.destination or "")}
            if user in world.hooks
            for event_id, _ in events.get(t, set())
        }
        missing = len(want - world.hooked)
        given_up = await conn.fetchval(
            "SELECT count(*) FROM notifications.webhook_deliveries WHERE status = 'failed'"
        )
        results.append(
            (
                "every subscribed event reached its webhook, signed (at least once)",
                missing + world.bad_signatures + int(given_up),
                f"{len(want)} events for {len(world.hooks)} endpoints; {missing} missing, "
                f"{world.bad_signatures} bad signatures, {given_up} given up"
                + (
                    f"; {world.unverifiable} to endpoints whose secret the client never got"
                    if world.unverifiable
                    else ""
                ),
            )
        )
    finally:
        await conn.close()
    addresses = {p.email.lower() for p in world.people + world.merchants}
    # A sender killed, or the sink stopped, between the server's acceptance and the
    # batch's record: that batch may go again, with the same Message-ID; a process has
    # MAIL_SENDERS senders, each with its batch in flight.
    mail_faults = sum(
        1 for f in world.faults if f.name.startswith(("kill:notifications", "restart:smtp"))
    )
    results.append(
        emails_sent_once(
            run_messages(inbox.summaries(mail_inbox, since=started_at), addresses),
            MAIL_BATCH * MAIL_SENDERS * mail_faults,
        )
    )
    return results


MAIL_BATCH = 50  # notifications' PAYSYS_MAIL_BATCH_SIZE default, which the run keeps
MAIL_SENDERS = 4  # and its PAYSYS_MAIL_SENDERS default


# -- the run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--fault-every", type=float, default=6.0)
    parser.add_argument("--smoke", action="store_true", help="a short run for make test")
    parser.add_argument("--instances", type=int, default=1, help="of each service")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    one = "" if args.instances == 1 else "#0"  # with N instances: one of them
    faults = [f"kill:{s}{one}" for s in SERVICES] + [
        "restart:kafka",
        "restart:redis",
        "restart:mongodb",
        "restart:smtp",
        f"pause:transactions{one}",
        f"pause:wallets{one}",
        # a relay process (kit.relays) killed mid-publish: its events go out again
        f"kill:transactions-relay{one}",
        f"kill:wallets-relay{one}",
    ]
    if args.instances > 1:  # and then every instance of one service
        faults += ["killall:transactions", "killall:gateway"]
    if args.smoke:
        args.ops, args.fault_every = 400, 3.0
        if args.instances == 1:
            killed = ("transactions", "wallets", "notifications", "gateway")
            faults = [f"kill:{s}" for s in killed]
        else:  # what only N instances add: an instance of the money path, then all
            # of one service (each restart waits for readiness: about 20 s here)
            faults = ["kill:transactions#0", "kill:wallets#0", "killall:wallets"]
    else:
        faults = faults * 2
    print(f"chaos seed {args.seed}: replay with --seed {args.seed}", flush=True)

    lease = 8.0
    stop_on_sigterm()
    run_stack = isolated(
        "paysys_chaos",
        PORTS["gateway"],
        PAYSYS_CALL_TIMEOUT_SECONDS="2",
        PAYSYS_LEASE_SECONDS=str(lease),
        PAYSYS_MAIL_MAX_ATTEMPTS="12",
        PAYSYS_MAIL_BACKOFF_BASE_SECONDS="0.5",
        # a killed sender's claimed jobs come back after this (its default is 10 min),
        # which must outlast one email's worst case (a connection and four answers)
        PAYSYS_MAIL_CLAIM_SECONDS="40",
        PAYSYS_SMTP_TIMEOUT_SECONDS="5",
        PAYSYS_SMTP_ACCEPT_TIMEOUT_SECONDS="6",
        # and so do a killed sender's webhook deliveries (60 s), retried sooner (15 s)
        PAYSYS_WEBHOOK_CLAIM_SECONDS="20",
        PAYSYS_WEBHOOK_RETRY_BASE_SECONDS="2",
        # Logs as in production: every line is then searched for card data.
        PAYSYS_LOG_LEVEL="INFO",
    )
    db_name, dsn, env = run_stack.db_name, run_stack.dsn, run_stack.env
    logs = ROOT / ".run" / "chaos-logs" / db_name
    stack = Stack(env, logs, args.instances)
    world = World(random.Random(args.seed))
    started, started_at = time.monotonic(), time.time()

    def phase(name: str, since: float) -> float:
        now = time.monotonic()
        print(f"chaos phase {name}: {now - since:.1f} s", file=sys.stderr, flush=True)
        return now

    hooks = serve_hooks(world)
    try:
        at = time.monotonic()
        stack.start_all()
        at = phase("start", at)
        asyncio.run(run(args, stack, world, faults, lease))
        at = phase("workload and faults", at)
        settled = asyncio.run(settle(dsn, 180, run_stack))
        at = phase("settle", at)
        results = asyncio.run(check(run_stack, logs, world, started_at))
        phase("checks", at)
    finally:
        hooks.shutdown()
        stack.stop()
        subprocess.run(["bash", str(STACK), "up"], cwd=ROOT, capture_output=True, check=False)
    if not settled:
        results.insert(0, ("everything settled within the recovery window", 1, ""))
    text = report(args, world, results, time.monotonic() - started)
    print(text)
    if not args.smoke:
        section = "chaos" if args.instances == 1 else f"chaos-{args.instances}-instances"
        write_section(args.out, "Reliability", section, text)
    failed = any(n for _, n, _ in results)
    if not failed:  # a failed run's database stays, to look into
        run_stack.drop()
    raise SystemExit(1 if failed else 0)


async def run(
    args: argparse.Namespace, stack: Stack, world: World, faults: list[str], lease: float
) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=args.clients * 3)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for i in range(6):
            await new_person(session, world, merchant=i < 2)
        for p in world.people:
            body = tx_body(world, "deposit", p) | {
                "card": {"number": GOOD_CARD, "exp_month": 12, "exp_year": 2099, "cvc": "123"}
            }
            await call(session, world, "tx", "POST", "/transactions/create", body, p.auth)
        done = asyncio.Event()
        faulting = asyncio.create_task(
            injector(stack, world, faults, args.fault_every, lease, done)
        )
        counter = iter(range(args.ops))

        async def client() -> None:
            # The workload runs for --ops operations, and on until every fault was made.
            while next(counter, None) is not None or not faulting.done():
                await one_op(session, world)

        await asyncio.gather(*(client() for _ in range(args.clients)))
        done.set()
        await faulting
        # One success after the last fault closes its window.
        deadline = time.monotonic() + 60
        while (
            world.faults
            and time.monotonic() < deadline
            and world.recovery(world.faults[-1]) is None
        ):
            await one_op(session, world)
    # A fault's window: from the fault to the first 2xx, after it, of an operation that
    # needs the faulted component; and the errors (5xx, no answer) clients saw meanwhile.
    for f in world.faults:
        f.recovered_at = world.recovery(f)
        end = f.recovered_at or float("inf")
        f.errors = sum(
            1 for s in world.seen if f.at < s.at <= end and (s.status == 0 or s.status >= 500)
        )


def report(
    args: argparse.Namespace, world: World, results: list[tuple[str, int, str]], elapsed: float
) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    ops = collections.Counter(s.op for s in world.seen)
    answers = collections.Counter(s.status for s in world.seen)
    violations = sum(n for _, n, _ in results)
    lines = [
        "## Chaos: a seeded workload under faults"
        + ("" if args.instances == 1 else f", {args.instances} instances of each service"),
        "",
        f"Written by `make chaos` (`bench/chaos.py`) on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"
        f" UTC, commit `{commit}`, on {os.cpu_count()} cores ({platform.machine()}), "
        f"everything on this one machine. Seed **{args.seed}** (replay: "
        f"`make chaos SEED={args.seed}`). {elapsed:.0f} s in all.",
        "",
        f"**{len(world.seen)} operations, {len(world.faults)} faults, {violations} violations.**",
        "",
        "Operations: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())) + ".",
        "Answers: "
        + ", ".join(f"{k or 'no answer'}: {v}" for k, v in sorted(answers.items()))
        + ".",
        "",
        "### Invariants",
        "",
        "| check | violations | notes |",
        "|---|---|---|",
        *[f"| {name} | {n} | {note} |" for name, n, note in results],
        "",
        "### Faults: how long clients saw errors",
        "",
        "The window runs from the fault to the first success of an operation that needs the "
        "faulted component (users: register, login, refresh; wallets: wallet operations and "
        "transactions; transactions and payment-gateway: transactions; everything else: any "
        "operation). Errors are the calls answered 5xx or not at all in that window, by all "
        f"{args.clients} clients.",
        "",
        "| fault | window s | errors |",
        "|---|---|---|",
        *[
            f"| {f.name} | {(f.recovered_at - f.at) if f.recovered_at else float('nan'):.1f}"
            f" | {f.errors} |"
            for f in world.faults
        ],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
