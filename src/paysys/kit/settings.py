"""Settings shared by every process; each service subclasses them with its own fields."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Local development defaults. They are public (they are in this repository), so the
# services refuse to start with them unless PAYSYS_ENV=local.
DEV_JWT_SECRET = "local-dev-only-jwt-secret-not-for-production-use"
DEV_INTERNAL_TOKEN = "local-dev-only-internal-service-token"

SERVICE_PORTS: dict[str, int] = {
    "gateway": 8000,
    "users": 8001,
    "wallets": 8002,
    "transactions": 8003,
    "payment_gateway": 8004,
    "notifications": 8005,
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
    # Where this process listens. Unset: the gateway (the public entry point) on every
    # interface, the internal services on loopback only.
    bind_host: str | None = None
    log_level: str = "INFO"

    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:55432/paysys",
        validation_alias=_env("DATABASE_URL", "PAYSYS_DATABASE_URL"),
    )
    # Connections kept open per process. Connections beyond it (up to as many again)
    # are opened for a peak and closed after, which costs a connect each time: size it
    # for the steady load.
    db_pool_size: int = 40
    redis_url: str = Field(
        "redis://127.0.0.1:56379/0", validation_alias=_env("REDIS_URL", "PAYSYS_REDIS_URL")
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:59092",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS", "PAYSYS_KAFKA_BOOTSTRAP_SERVERS"),
    )
    mongodb_url: str = Field(
        "mongodb://127.0.0.1:57017/", validation_alias=_env("MONGODB_URL", "PAYSYS_MONGODB_URL")
    )
    mongodb_database: str = "paysys"
    smtp_host: str = Field("127.0.0.1", validation_alias=_env("SMTP_HOST", "PAYSYS_SMTP_HOST"))
    smtp_port: int = Field(51025, validation_alias=_env("SMTP_PORT", "PAYSYS_SMTP_PORT"))

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

    # Test-only fault injection (see transactions); refused outside local/test.
    enable_fault_hooks: bool = False

    @model_validator(mode="after")
    def _refuse_dev_secrets_outside_local(self) -> KitSettings:
        if self.env not in ("local", "test"):
            unset = [
                f"PAYSYS_{name.upper()}"
                for name, dev in self.DEV_SECRETS.items()
                if getattr(self, name) == dev
            ]
            if unset:
                raise ValueError(
                    f"{', '.join(unset)} must be set outside local mode (PAYSYS_ENV={self.env})"
                )
            if self.enable_fault_hooks:
                raise ValueError("PAYSYS_ENABLE_FAULT_HOOKS is for local and test runs only")
        return self

    def bind_host_of(self, service: str) -> str:
        if self.bind_host:
            return self.bind_host
        return "0.0.0.0" if service == "gateway" else "127.0.0.1"

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def url_of(self, service: str) -> str:
        return f"http://{self.host}:{self.port_of(service)}"
