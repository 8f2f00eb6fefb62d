"""Settings shared by every process; each service subclasses them with its own fields."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from paysys.kit.crypto import DEV_BLIND_INDEX_KEY, DEV_DATA_KEYS, FieldCipher, cipher_from

# Local development defaults. They are public (they are in this repository), so the
# services refuse to start with them unless PAYSYS_ENV=local.
DEV_JWT_SECRET = "local-dev-only-jwt-secret-not-for-production-use"
DEV_INTERNAL_TOKEN = "local-dev-only-internal-service-token"
MIN_SECRET_BYTES = 32

SERVICE_PORTS: dict[str, int] = {
    "gateway": 8000,
    "users": 8001,
    "wallets": 8002,
    "transactions": 8003,
    "payment_gateway": 8004,
    "notifications": 8005,
}

# A relay process's port when none is given: its service's, plus this (8051-8055).
RELAY_PORT_OFFSET = 50

# The outbox tables of each service's schema (named after the service), which its relay
# process (`paysys relay SERVICE`, kit.relays) publishes.
RELAYED: dict[str, tuple[str, ...]] = {
    "users": ("outbox", "records_outbox"),
    "wallets": ("outbox", "records_outbox"),
    "transactions": ("outbox", "records_outbox"),
    "payment_gateway": ("outbox",),
    "notifications": ("records_outbox",),
}


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class KitSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYSYS_", extra="ignore", populate_by_name=True)

    # Settings that hold a secret, with their public development default: refused
    # outside local and test runs. Services add their own.
    DEV_SECRETS: ClassVar[dict[str, str]] = {
        "jwt_secret": DEV_JWT_SECRET,
        "internal_token": DEV_INTERNAL_TOKEN,
    }

    # No PAYSYS_ENV means production: a deployment that forgets it refuses the public
    # development secrets instead of running with them. `make run` and the tests say
    # local / test.
    env: Literal["local", "test", "staging", "production"] = "production"
    host: str = "127.0.0.1"  # where the services reach each other
    # Per service, where it is reached when not at `host` (JSON in PAYSYS_SERVICE_HOSTS,
    # e.g. {"users": "paysys-users"}: one Kubernetes Service per process).
    service_hosts: dict[str, str] = {}
    # Where this process listens. Unset: the gateway (the public entry point) on every
    # interface, the internal services on loopback only.
    bind_host: str | None = None
    # This process's own port when it is one of several instances behind a balancer
    # (which listens on the service's port); unset: the service's port.
    listen_port: int | None = None
    log_level: str = "INFO"
    # A second port for /metrics, /health and /ready, which then leave the API's port
    # (the chart's 9100: only Prometheus and the kubelet reach it). Unset: all on one.
    metrics_port: int | None = Field(None, ge=1, le=65535)

    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:15432/paysys",
        validation_alias=_env("DATABASE_URL", "PAYSYS_DATABASE_URL"),
    )
    # Connections kept open per process. Connections beyond it (up to as many again)
    # are opened for a peak and closed after, which costs a connect each time: size it
    # for the steady load.
    db_pool_size: int = 40
    # "transaction": DATABASE_URL is a PgBouncer in transaction pooling, whose database
    # entry sets this service's search_path (docs/scaling.md); "none": PostgreSQL.
    db_pooler: Literal["none", "transaction"] = "none"
    # Apply the service's migrations when it starts (serialised by an advisory lock).
    # Off where a deployment migrates first, once (the Helm chart's pre-upgrade Job).
    migrate_on_start: bool = True
    redis_url: str = Field(
        "redis://127.0.0.1:16379/0", validation_alias=_env("REDIS_URL", "PAYSYS_REDIS_URL")
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS", "PAYSYS_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # Prepended to every topic name this process publishes to or consumes: environments
    # (or a chaos run beside a test run) that share one Kafka cluster stay apart. The
    # contract's names are what follows the prefix; the default is none.
    kafka_topic_prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]{0,100}$")
    # Kafka's security (docs/configuration.md): PLAINTEXT on a private network, or TLS
    # (SSL), SASL (PLAIN or SCRAM) or both; TLS verified against the system's CAs or
    # PAYSYS_KAFKA_CA_FILE. SASL PLAIN without TLS is refused outside local and test.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ca_file: str | None = None
    # The topics this process creates when missing (production: 3 and 2, so an
    # acknowledged event survives the loss of a broker; the producers ask acks=all).
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_min_insync_replicas: int = Field(1, ge=1)
    mongodb_url: str = Field(
        "mongodb://127.0.0.1:17017/", validation_alias=_env("MONGODB_URL", "PAYSYS_MONGODB_URL")
    )
    mongodb_database: str = "paysys"
    smtp_host: str = Field("127.0.0.1", validation_alias=_env("SMTP_HOST", "PAYSYS_SMTP_HOST"))
    smtp_port: int = Field(11025, validation_alias=_env("SMTP_PORT", "PAYSYS_SMTP_PORT"))

    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "paysys-users"
    jwt_audience: str = "paysys-api"
    internal_token: str = DEV_INTERNAL_TOKEN

    gateway_port: int = SERVICE_PORTS["gateway"]
    users_port: int = SERVICE_PORTS["users"]
    wallets_port: int = SERVICE_PORTS["wallets"]
    transactions_port: int = SERVICE_PORTS["transactions"]
    payment_gateway_port: int = SERVICE_PORTS["payment_gateway"]
    notifications_port: int = SERVICE_PORTS["notifications"]

    # TLS. With a certificate and key, the process serves HTTPS (usually the gateway
    # alone: PAYSYS_TLS_* in its environment). With PAYSYS_INTERNAL_SCHEME=https the
    # processes call each other over TLS, trusting PAYSYS_TLS_CA_FILE (or the system).
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_ca_file: str | None = None
    internal_scheme: Literal["http", "https"] = "http"

    # How long an outbox relay, woken by a commit, waits before it reads: what other
    # requests commit meanwhile goes out in the same batch. Longer: fewer, larger
    # batches (less CPU per event, here and in Kafka and MongoDB); events a little later.
    # 100 ms: at 200 transfers/s, 4 % less CPU per transfer than 20 ms (make bench).
    # 300 ms, relays apart (bench/load.py A/B, 30 s runs): 6.31 ms of CPU per transfer
    # for the whole box against 7.47-9.62 at 100 ms, Kafka's share 0.16 against
    # 0.44-0.60; bulk 0.51 ms of request-path CPU per item against 0.66-0.75.
    outbox_linger_ms: float = Field(300.0, ge=0, le=1000)
    # Where a service's outbox and records relays run: "inline", as tasks of the service
    # process; "apart", in a process of their own (`paysys relay SERVICE`, which the
    # deployment runs beside each instance: the chart's sidecar, `make run`'s fleet),
    # woken by a NOTIFY after each commit. Apart, their CPU leaves the process that
    # answers requests (measured in make bench: docs/benchmarks.md).
    relays: Literal["inline", "apart"] = "inline"

    # Allocations between the garbage collector's young collections (Python's default:
    # 700; a request allocates thousands of objects). At 700 the collector ran several
    # times per request and its full collections, each walking every object, made the
    # slowest answers; what a process built at startup is also frozen out of every
    # collection (kit.runtime). A/B, 30 s transfer runs: p99 253-265 -> 163-174 ms,
    # request-path CPU per transfer 2.61-2.88 -> 2.36-2.52 ms.
    gc_threshold: int = Field(50_000, ge=700)

    # On SIGTERM, how long a process drains requests in flight before it stops: longer
    # than the longest saga step (PAYSYS_STEP_ATTEMPTS x PAYSYS_CALL_TIMEOUT_SECONDS plus
    # backoff: 15.8 s by default), within the pod's grace period (the chart sets it).
    graceful_shutdown_seconds: float = Field(40.0, gt=0)

    # The request head (request line and headers): larger gets 431, slower is closed
    # (kit.server). Request bodies have their own bound (1 MiB, kit.app).
    http_max_head_bytes: int = Field(64 * 1024, ge=8 * 1024)
    http_head_timeout_seconds: float = Field(10.0, gt=0)
    # Kept-alive connections between our processes are let go by their client first: a
    # server closes one idle for PAYSYS_HTTP_IDLE_SECONDS, a client's pool lets go of one
    # idle for PAYSYS_HTTP_CLIENT_IDLE_SECONDS, shorter. The other way round, a client
    # sends on a connection just as its server closes it (kit.http, cli.server_config).
    http_idle_seconds: float = Field(75.0, gt=0)
    http_client_idle_seconds: float = Field(30.0, gt=0)

    def kafka_options(self) -> dict[str, Any]:
        """aiokafka's connection settings: the same for producers, consumers and admin
        (a copy each time; the settings themselves are built once per process)."""
        return dict(self._kafka_connection)

    @cached_property
    def _kafka_connection(self) -> dict[str, Any]:
        # Built once, as `cipher` is: a TLS context reads its CA file.
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(cafile=self.kafka_ca_file)
        if self.kafka_security_protocol.startswith("SASL"):
            options.update(
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password.get_secret_value(),
            )
        return options

    @model_validator(mode="after")
    def _migrations_need_a_session(self) -> KitSettings:
        if self.db_pooler == "transaction" and self.migrate_on_start:
            raise ValueError(
                "PAYSYS_MIGRATE_ON_START needs a direct connection (its advisory lock holds "
                "a session): migrate beforehand (the chart's Job) behind PgBouncer"
            )
        return self

    @model_validator(mode="after")
    def _clients_let_go_first(self) -> KitSettings:
        if self.http_client_idle_seconds >= self.http_idle_seconds:
            raise ValueError(
                "PAYSYS_HTTP_CLIENT_IDLE_SECONDS must be below PAYSYS_HTTP_IDLE_SECONDS: a "
                "client would send on a connection its server is closing"
            )
        return self

    @model_validator(mode="after")
    def _kafka_settings_that_hold(self) -> KitSettings:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                "PAYSYS_KAFKA_MIN_INSYNC_REPLICAS cannot exceed PAYSYS_KAFKA_REPLICATION_FACTOR"
            )
        clear = (self.kafka_security_protocol, self.kafka_sasl_mechanism) == (
            "SASL_PLAINTEXT",
            "PLAIN",
        )
        if clear and self.env not in ("local", "test"):
            raise ValueError(
                "SASL PLAIN needs TLS outside local mode (PAYSYS_KAFKA_SECURITY_PROTOCOL="
                f"SASL_SSL): the password would cross the network in clear (PAYSYS_ENV={self.env})"
            )
        return self

    @model_validator(mode="after")
    def _refuse_dev_secrets_outside_local(self) -> KitSettings:
        if self.env not in ("local", "test"):
            # A public default, an empty value or one too short to guess is not a secret
            # (an empty internal token would let an empty header through).
            unset = [
                f"PAYSYS_{name.upper()}"
                for name, dev in self.DEV_SECRETS.items()
                if (value := getattr(self, name)) == dev
                or len(value.strip().encode()) < MIN_SECRET_BYTES
            ]
            if unset:
                raise ValueError(
                    f"{', '.join(unset)} must be set, to a secret of at least "
                    f"{MIN_SECRET_BYTES} bytes, outside local mode (PAYSYS_ENV={self.env})"
                )
        return self

    def bind_host_of(self, service: str) -> str:
        if self.bind_host:
            return self.bind_host
        return "0.0.0.0" if service == "gateway" else "127.0.0.1"

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def relay_port_of(self, service: str) -> int:
        """The port of a service's relay process (kit.relays): PAYSYS_LISTEN_PORT, else
        the service's port plus RELAY_PORT_OFFSET."""
        return self.listen_port or self.port_of(service) + RELAY_PORT_OFFSET

    def url_of(self, service: str) -> str:
        host = self.service_hosts.get(service, self.host)
        return f"{self.internal_scheme}://{host}:{self.port_of(service)}"


class DataKeySettings(KitSettings):
    """Settings of a service that keeps personal data (users, notifications): the keys
    that seal it at rest (see kit.crypto)."""

    DEV_SECRETS: ClassVar[dict[str, str]] = {
        **KitSettings.DEV_SECRETS,
        "data_keys": DEV_DATA_KEYS,
        "blind_index_key": DEV_BLIND_INDEX_KEY,
    }

    # "id:base64(32 bytes),..." (all keys that may have sealed stored data) and the id
    # of the one that seals new data. Rotation: add the new key everywhere, make it
    # current, then run `paysys rotate-keys <service>`.
    data_keys: str = DEV_DATA_KEYS
    data_key_id: str = DEV_DATA_KEYS.split(":", 1)[0]
    # Key of the blind index that finds a user by email (base64, 32 bytes).
    blind_index_key: str = DEV_BLIND_INDEX_KEY

    @cached_property
    def cipher(self) -> FieldCipher:
        return cipher_from(self.data_keys, self.data_key_id, self.blind_index_key)
