"""A stack of the six processes for one bench or chaos run: its own fresh database and
MongoDB database, its own Kafka consumer group (pinned at the topics' ends when the run
starts, since the broker is shared with tests and earlier runs), its own ports, and
rate limits out of the way (a run is one client address and a few users on purpose)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from paysys.kit.events import TOPICS
from paysys.kit.settings import RELAY_PORT_OFFSET
from paysys_dev.stack import SERVICES, infra_env

# What the notifications service reads (notifications/consumers.py): every topic, for
# webhooks.
NOTIFIED_TOPICS = TOPICS


async def pin_consumer_group(kafka: str, group: str, topics: list[str]) -> None:
    """Commits a new consumer group's offsets at the topics' current ends: it then reads
    what comes after this moment, and a restarted consumer resumes where the group left
    off. ("latest" as the reset policy instead would skip, at each restart, what a
    partition the group never committed received meanwhile: a rare topic's events.)"""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from paysys.kit.consumer import ensure_topics

    await ensure_topics(kafka, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        if len({tp.topic for tp in partitions}) < len(topics):
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
            ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Isolated:
    base: dict[str, str]  # the infrastructure's URLs, as `infra/stack.sh env` says
    db_name: str
    dsn: str  # plain asyncpg DSN of the run's database
    env: dict[str, str]  # the environment of the run's six processes
    topic_prefix: str  # the run's Kafka topics are the contract's names behind this
    root_dsn: str  # the database the run's own was created from

    def drop(self) -> None:
        """Removes the run's databases (PostgreSQL and MongoDB) and its Kafka topics;
        best effort."""
        drop_database(self.root_dsn, self.base["MONGODB_URL"], self.db_name)
        try:
            asyncio.run(_drop_topics(self.base["KAFKA_BOOTSTRAP_SERVERS"], self.topic_prefix))
        except Exception as exc:
            print(f"(could not drop the topics {self.topic_prefix}*: {exc})")


async def _drop_topics(kafka: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka, request_timeout_ms=10000)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def stop_on_sigterm() -> None:
    """SIGTERM ends a run as Ctrl-C does: the script's `finally` then stops the processes
    it started. By default the signal ended the script alone, and its six processes
    kept running and consuming, so that a later run counted their emails as its own."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def free_ports(services: Iterable[str], spread: int = 4) -> dict[str, int]:
    """Ports for a run's processes, drawn at random (fixed numbers collide between runs):
    a base in 20000-26599, below the kernel's ephemeral range (32768-60999, where the OS
    hands out the source ports of outgoing connections; tests.conftest.free_port says
    why), where every service's port and its instances' (+100 each, up to `spread`; the
    fleet's instance_port), and their relays' (+50), are free now."""
    names = list(services)
    while True:
        base = random.randint(20000, 26999 - 100 * spread - len(names))
        ports = {s: base + i for i, s in enumerate(names)}
        relays = [p + RELAY_PORT_OFFSET for p in ports.values()]  # KitSettings.relay_port_of
        if all(_free(p + 100 * k) for p in [*ports.values(), *relays] for k in range(spread + 1)):
            return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _admin(root_dsn: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(root_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def create_database(root_dsn: str, name: str) -> None:
    """A fresh, empty database beside the one `root_dsn` names (tests use it too)."""
    _admin(root_dsn, f'CREATE DATABASE "{name}"')


def drop_database(root_dsn: str, mongodb_url: str, name: str) -> None:
    """Removes a run's database and its MongoDB database, best effort (left behind,
    they pile up: a local PostgreSQL with a hundred of them spends its autovacuum on
    old runs)."""
    from pymongo import MongoClient

    try:
        _admin(root_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client: MongoClient[dict[str, object]] = MongoClient(
            mongodb_url, serverSelectionTimeoutMS=5000
        )
        try:
            client.drop_database(name)
        finally:
            client.close()
    except Exception as exc:
        print(f"(could not drop {name}: {exc})")


def isolated(prefix: str, first_port: int, **settings: str) -> Isolated:
    base = infra_env(os.environ)
    db_name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    root_dsn = base["DATABASE_URL"].replace("+asyncpg", "")
    create_database(root_dsn, db_name)
    env = {
        **os.environ,
        **base,
        "PAYSYS_ENV": "test",
        "PAYSYS_MONGODB_DATABASE": db_name,
        "DATABASE_URL": base["DATABASE_URL"].rsplit("/", 1)[0] + "/" + db_name,
        "PAYSYS_CONSUMER_GROUP": f"paysys-notifications-{db_name}",
        "PAYSYS_CONSUMER_START": "earliest",  # from where the group is pinned, below
        # Topics of the run's own: a test stack running beside (make test runs the chaos
        # smoke run while its own stack is up) neither sends this run's email nor
        # counts in its figures, and a consumer that falls back to the earliest offset
        # (its position out of range after a Kafka restart) reads no earlier run's
        # events: shared by every chaos run, they had become 60,696 emails to strangers.
        "PAYSYS_KAFKA_TOPIC_PREFIX": f"{db_name}.",
        "PAYSYS_RATE_LIMIT_USER": "100000000",
        "PAYSYS_RATE_LIMIT_LOGIN": "100000000",
        "PAYSYS_RATE_LIMIT_REGISTER": "100000000",
        **{f"PAYSYS_{s.upper()}_PORT": str(first_port + i) for i, s in enumerate(SERVICES)},
        **settings,
    }
    dsn = root_dsn.rsplit("/", 1)[0] + "/" + db_name
    topics = [env["PAYSYS_KAFKA_TOPIC_PREFIX"] + t for t in NOTIFIED_TOPICS]
    asyncio.run(
        pin_consumer_group(base["KAFKA_BOOTSTRAP_SERVERS"], env["PAYSYS_CONSUMER_GROUP"], topics)
    )
    return Isolated(base, db_name, dsn, env, env["PAYSYS_KAFKA_TOPIC_PREFIX"], root_dsn)
