"""The contract's Prometheus metrics, and how HTTP requests are recorded in them."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRANSACTIONS = Counter("paysys_transactions_total", "Transactions finished", ["type", "status"])
# How many moves each call of wallets' move_batch carried (issue 21: group commit).
WALLET_BATCH_SIZE = Histogram(
    "paysys_wallet_batch_size",
    "Moves per wallets batch (one database transaction)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)
TRANSACTION_DURATION = Histogram(
    "paysys_transaction_duration_seconds",
    "Saga duration from creation to a terminal state",
    ["type"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TRANSACTION_FAILURES = Counter(
    "paysys_transaction_failures_total", "Failed transactions by failure code", ["type", "code"]
)
OUTBOX_PENDING = Gauge("paysys_outbox_pending", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "paysys_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "paysys_outbox_published_total", "Outbox events published to Kafka", ["service", "topic"]
)
OUTBOX_PUBLISH_ERRORS = Counter(
    "paysys_outbox_publish_errors_total", "Failed attempts to publish an outbox batch", ["service"]
)
EVENTS_CONSUMED = Counter(
    "paysys_events_consumed_total", "Kafka events handled", ["consumer", "event_type"]
)
EVENTS_DUPLICATE = Counter(
    "paysys_events_duplicate_total", "Redelivered Kafka events skipped by the inbox", ["consumer"]
)
CONSUMER_LAG = Gauge(
    "paysys_consumer_lag", "Messages not yet consumed", ["consumer", "topic", "partition"]
)
NOTIFICATIONS_SENT = Counter(
    "paysys_notifications_sent_total", "Notification emails by outcome", ["kind", "status"]
)
WEBHOOK_DELIVERIES = Counter(
    "paysys_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (succeeded, retried, failed: given up)",
    ["status"],
)
RATE_LIMITED = Counter("paysys_rate_limited_total", "Requests refused by a rate limit", ["scope"])
LOGINS = Counter("paysys_logins_total", "Login attempts by outcome", ["outcome"])
IN_FLIGHT_TRANSACTIONS = Gauge(
    "paysys_transactions_in_flight", "Transactions in PENDING or PROCESSING", ["status"]
)
STUCK_TRANSACTIONS = Gauge(
    "paysys_transactions_stuck",
    "Transactions in flight for longer than the recovery window",
)


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def observe_request(service: str, scope: Scope, status: int, seconds: float) -> None:
    """Counts and times a request under its route template, never the raw path (the
    app's request middleware calls it: kit.app.RequestContextMiddleware)."""
    route = _route_template(scope)
    if route != "/metrics":
        method = scope["method"]
        HTTP_REQUESTS.labels(service, method, route, str(status)).inc()
        HTTP_DURATION.labels(service, method, route).observe(seconds)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", []):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"


def prime(metric: Counter | Histogram, *label_sets: tuple[str, ...]) -> None:
    """Creates labelled series at zero at start, so the first real increment shows up
    in rate()/increase() (a series born at its first increment would not)."""
    for labels in label_sets:
        metric.labels(*labels)
