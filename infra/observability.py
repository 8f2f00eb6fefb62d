"""Source of the shipped alert rules, their promtool unit tests, the Grafana dashboards
and Grafana's alerting provisioning. Run `python infra/observability.py` after editing;
tests/integration/test_observability.py fails when the generated files are stale.

One definition per alert and per panel keeps the four outputs from drifting apart."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SERVICE_JOBS = "gateway|users|wallets|transactions|payment-gateway|notifications"


@dataclass(frozen=True)
class Case:
    """A promtool unit test: these series, at this time, fire these alerts."""

    series: dict[str, str]
    eval_time: str
    fires: list[dict[str, str]]


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    case: Case
    quiet: Case | None = None  # the same rule staying silent on healthy input


ALERTS: tuple[Alert, ...] = (
    Alert(
        "ServiceDown",
        f'up{{job=~"{SERVICE_JOBS}"}} == 0',
        "1m",
        "page",
        "{{ $labels.job }} is down",
        "Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}.",
        Case(
            {'up{job="wallets", instance="w:8002"}': "1 1 0 0 0 0"},
            "5m",
            [{"job": "wallets", "instance": "w:8002"}],
        ),
        Case({'up{job="wallets", instance="w:8002"}': "1 1 1 1 1 1"}, "5m", []),
    ),
    Alert(
        "HighErrorRatio",
        'sum by (service) (rate(http_requests_total{status=~"5.."}[5m]))'
        " / sum by (service) (rate(http_requests_total[5m])) > 0.05",
        "5m",
        "page",
        "{{ $labels.service }} answers more than 5% of requests with 5xx",
        "More than 5% of {{ $labels.service }}'s requests fail with a server error.",
        Case(
            {
                'http_requests_total{service="wallets", status="500"}': "0+10x20",
                'http_requests_total{service="wallets", status="200"}': "0+90x20",
            },
            "15m",
            [{"service": "wallets"}],
        ),
        Case(
            {
                'http_requests_total{service="wallets", status="500"}': "0+1x20",
                'http_requests_total{service="wallets", status="200"}': "0+99x20",
            },
            "15m",
            [],
        ),
    ),
    Alert(
        "HighLatencyP99",
        "histogram_quantile(0.99, sum by (service, le) "
        "(rate(http_request_duration_seconds_bucket[5m]))) > 1",
        "10m",
        "page",
        "{{ $labels.service }} p99 latency above 1 s",
        "The 99th percentile of {{ $labels.service }}'s request duration is over 1 s.",
        Case(
            {
                'http_request_duration_seconds_bucket{service="gateway", le="1"}': "0+1x30",
                'http_request_duration_seconds_bucket{service="gateway", le="2.5"}': "0+100x30",
                'http_request_duration_seconds_bucket{service="gateway", le="+Inf"}': "0+100x30",
            },
            "20m",
            [{"service": "gateway"}],
        ),
    ),
    Alert(
        "FailedTransactionRatioHigh",
        'sum(rate(paysys_transactions_total{status="FAILED"}[15m]))'
        " / sum(rate(paysys_transactions_total[15m])) > 0.25",
        "10m",
        "page",
        "More than a quarter of transactions fail",
        "Over 25% of transactions ended FAILED in the last 15 minutes.",
        Case(
            {
                'paysys_transactions_total{type="transfer", status="FAILED"}': "0+5x40",
                'paysys_transactions_total{type="transfer", status="COMPLETED"}': "0+5x40",
            },
            "30m",
            [{}],
        ),
    ),
    Alert(
        "TransactionsStuck",
        "max(paysys_transactions_stuck) > 0",
        "2m",
        "page",
        "Transactions stuck in PENDING or PROCESSING",
        "Some transactions have been in flight longer than the recovery window.",
        Case({'paysys_transactions_stuck{service="transactions"}': "0 0 2 2 2 2 2"}, "6m", [{}]),
        Case({'paysys_transactions_stuck{service="transactions"}': "0 0 0 0 0 0 0"}, "6m", []),
    ),
    Alert(
        "OutboxBacklog",
        "max by (service) (paysys_outbox_pending) > 1000",
        "5m",
        "page",
        "{{ $labels.service }} outbox backlog over 1000 events",
        "Events of {{ $labels.service }} are not reaching Kafka fast enough.",
        Case(
            {'paysys_outbox_pending{service="wallets"}': "5000x10"}, "8m", [{"service": "wallets"}]
        ),
    ),
    Alert(
        "OutboxStale",
        "max by (service) (paysys_outbox_oldest_age_seconds) > 60",
        "2m",
        "page",
        "{{ $labels.service }} has events waiting over a minute",
        "The oldest unpublished event of {{ $labels.service }} is older than 60 s.",
        Case(
            {'paysys_outbox_oldest_age_seconds{service="users"}': "300x10"},
            "5m",
            [{"service": "users"}],
        ),
    ),
    Alert(
        "ConsumerLagHigh",
        "sum by (consumer, topic) (paysys_consumer_lag) > 1000",
        "5m",
        "ticket",
        "{{ $labels.consumer }} is behind on {{ $labels.topic }}",
        "{{ $labels.consumer }} has more than 1000 unconsumed messages on {{ $labels.topic }}.",
        Case(
            {
                'paysys_consumer_lag{consumer="paysys-notifications", topic="user.registered", '
                'partition="0"}': "5000x10"
            },
            "8m",
            [{"consumer": "paysys-notifications", "topic": "user.registered"}],
        ),
    ),
    Alert(
        "RateLimitSurge",
        "sum by (scope) (rate(paysys_rate_limited_total[5m])) > 5",
        "5m",
        "ticket",
        "Rate limiting on {{ $labels.scope }} above 5 requests/s",
        "Many requests are refused by the {{ $labels.scope }} limit: abuse or a bad client.",
        Case({'paysys_rate_limited_total{scope="login"}': "0+600x20"}, "15m", [{"scope": "login"}]),
    ),
    Alert(
        "FailedLoginSurge",
        'sum(rate(paysys_logins_total{outcome="failure"}[5m])) > 2',
        "5m",
        "ticket",
        "Failed logins above 2/s",
        "Failed logins are far above normal: credential stuffing is likely.",
        Case({'paysys_logins_total{outcome="failure"}': "0+300x20"}, "15m", [{}]),
    ),
    Alert(
        "NotificationsFailing",
        'sum(rate(paysys_notifications_sent_total{status="failed"}[15m])) > 0',
        "15m",
        "ticket",
        "Emails are failing after every retry",
        "Some notification emails were given up on; check the SMTP server.",
        Case(
            {'paysys_notifications_sent_total{kind="welcome", status="failed"}': "0+1x40"},
            "30m",
            [{}],
        ),
    ),
    Alert(
        "WebhookDeliveriesGivenUp",
        'sum(increase(paysys_webhook_deliveries_total{status="failed"}[1h])) > 0',
        "0m",
        "ticket",
        "Webhook deliveries given up after 3 days of retries",
        "Some events never reached a user's endpoint; the user must fetch them or retry.",
        Case({'paysys_webhook_deliveries_total{status="failed"}': "0 0 0 1+0x30"}, "20m", [{}]),
    ),
)


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[str, ...]
    unit: str = "short"
    # True when the panel is legitimately empty unless something is wrong (5xx, stuck
    # transactions); the dashboard test then only checks that its queries parse.
    quiet_ok: bool = False


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard(
        "paysys-overview",
        "paysys / Overview",
        (
            Panel(
                "Request rate by service",
                ("sum by (service) (rate(http_requests_total[1m]))",),
                "reqps",
            ),
            Panel(
                "5xx ratio by service",
                (
                    'sum by (service) (rate(http_requests_total{status=~"5.."}[5m])) / '
                    "sum by (service) (rate(http_requests_total[5m]))",
                ),
                "percentunit",
                quiet_ok=True,
            ),
            Panel(
                "4xx rate by route",
                ('sum by (service, route) (rate(http_requests_total{status=~"4.."}[5m]))',),
                "reqps",
            ),
            Panel(
                "p50 / p99 latency by service",
                (
                    "histogram_quantile(0.5, sum by (service, le) "
                    "(rate(http_request_duration_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (service, le) "
                    "(rate(http_request_duration_seconds_bucket[5m])))",
                ),
                "s",
            ),
            Panel("Processes up", (f'up{{job=~"{SERVICE_JOBS}"}}',)),
            Panel("Resident memory by process", ("process_resident_memory_bytes",), "bytes"),
        ),
    ),
    Dashboard(
        "paysys-money",
        "paysys / Money flow",
        (
            Panel(
                "Transactions by type and status",
                ("sum by (type, status) (increase(paysys_transactions_total[5m]))",),
            ),
            Panel(
                "Saga duration p50 / p99 by type",
                (
                    "histogram_quantile(0.5, sum by (type, le) "
                    "(rate(paysys_transaction_duration_seconds_bucket[5m])))",
                    "histogram_quantile(0.99, sum by (type, le) "
                    "(rate(paysys_transaction_duration_seconds_bucket[5m])))",
                ),
                "s",
            ),
            Panel(
                "Failures by code",
                ("sum by (code) (increase(paysys_transaction_failures_total[5m]))",),
            ),
            Panel(
                "Failed-transaction ratio",
                (
                    'sum(rate(paysys_transactions_total{status="FAILED"}[5m])) / '
                    "sum(rate(paysys_transactions_total[5m]))",
                ),
                "percentunit",
            ),
            Panel("Transactions in flight", ("sum by (status) (paysys_transactions_in_flight)",)),
            Panel(
                "Stuck past the recovery window", ("max(paysys_transactions_stuck)",), quiet_ok=True
            ),
        ),
    ),
    Dashboard(
        "paysys-events",
        "paysys / Event pipeline",
        (
            Panel("Outbox pending by service", ("max by (service) (paysys_outbox_pending)",)),
            Panel(
                "Oldest unpublished event",
                ("max by (service) (paysys_outbox_oldest_age_seconds)",),
                "s",
            ),
            Panel(
                "Events published by topic",
                ("sum by (topic) (rate(paysys_outbox_published_total[5m]))",),
                "ops",
            ),
            Panel(
                "Events consumed by type",
                ("sum by (event_type) (rate(paysys_events_consumed_total[5m]))",),
                "ops",
            ),
            Panel("Consumer lag by topic", ("sum by (consumer, topic) (paysys_consumer_lag)",)),
            Panel(
                "Emails by kind and outcome",
                ("sum by (kind, status) (increase(paysys_notifications_sent_total[15m]))",),
            ),
            Panel(
                "Outbox publish errors",
                ("sum by (service) (rate(paysys_outbox_publish_errors_total[5m]))",),
                quiet_ok=True,
            ),
        ),
    ),
    Dashboard(
        "paysys-security",
        "paysys / Security",
        (
            Panel("Logins by outcome", ("sum by (outcome) (increase(paysys_logins_total[5m]))",)),
            Panel(
                "Rate-limited requests by scope",
                ("sum by (scope) (increase(paysys_rate_limited_total[5m]))",),
            ),
            Panel(
                "401 responses at the gateway",
                ('sum(rate(http_requests_total{service="gateway", status="401"}[5m]))',),
                "reqps",
            ),
        ),
    ),
)


def _render_labels(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def prometheus_rules() -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": "paysys",
                "rules": [
                    {
                        "alert": a.name,
                        "expr": a.expr,
                        "for": a.for_,
                        "labels": {"severity": a.severity},
                        "annotations": {
                            "summary": a.summary,
                            "description": a.description,
                            "runbook": f"docs/operations.md#{a.name.lower()}",
                        },
                    }
                    for a in ALERTS
                ],
            }
        ]
    }


def promtool_tests() -> dict[str, Any]:
    tests = []
    for alert in ALERTS:
        for case in (alert.case, alert.quiet):
            if case is None:
                continue
            tests.append(
                {
                    "interval": "1m",
                    "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                    "alert_rule_test": [
                        {
                            "eval_time": case.eval_time,
                            "alertname": alert.name,
                            "exp_alerts": [
                                {
                                    "exp_labels": {"severity": alert.severity, **labels},
                                    "exp_annotations": {
                                        "summary": _render_labels(alert.summary, labels),
                                        "description": _render_labels(alert.description, labels),
                                        "runbook": f"docs/operations.md#{alert.name.lower()}",
                                    },
                                }
                                for labels in case.fires
                            ],
                        }
                    ],
                }
            )
    return {"rule_files": ["paysys.yml"], "evaluation_interval": "1m", "tests": tests}


def grafana_dashboard(d: Dashboard) -> dict[str, Any]:
    panels = []
    for i, p in enumerate(d.panels):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": p.title,
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "gridPos": {"x": (i % 2) * 12, "y": (i // 2) * 8, "w": 12, "h": 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "targets": [
                    {
                        "refId": chr(ord("A") + j),
                        "expr": expr,
                        "datasource": {"type": "prometheus", "uid": "prometheus"},
                    }
                    for j, expr in enumerate(p.exprs)
                ],
            }
        )
    return {
        "uid": d.uid,
        "title": d.title,
        "tags": ["paysys"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }


def grafana_alerting() -> dict[str, Any]:
    def duration_minutes(d: str) -> str:
        return d

    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "paysys",
                "folder": "paysys",
                "interval": "1m",
                "rules": [
                    {
                        "uid": f"paysys-{a.name.lower()}",
                        "title": a.name,
                        "condition": "B",
                        "for": duration_minutes(a.for_),
                        "labels": {"severity": a.severity},
                        "annotations": {"summary": a.summary, "description": a.description},
                        "data": [
                            {
                                "refId": "A",
                                "datasourceUid": "prometheus",
                                "relativeTimeRange": {"from": 600, "to": 0},
                                "model": {"refId": "A", "expr": a.expr, "instant": True},
                            },
                            {
                                "refId": "B",
                                "datasourceUid": "__expr__",
                                "model": {
                                    "refId": "B",
                                    "type": "threshold",
                                    "expression": "A",
                                    "conditions": [{"evaluator": {"type": "gt", "params": [0]}}],
                                },
                            },
                        ],
                        "noDataState": "OK",
                        "execErrState": "Error",
                    }
                    for a in ALERTS
                ],
            }
        ],
        "contactPoints": [
            {
                "orgId": 1,
                "name": "oncall-email",
                "receivers": [
                    {
                        "uid": "paysys-oncall-email",
                        "type": "email",
                        "settings": {"addresses": "oncall@paysys.local"},
                    }
                ],
            }
        ],
        "policies": [{"orgId": 1, "receiver": "oncall-email", "group_by": ["alertname"]}],
    }


def outputs() -> dict[Path, str]:
    dump = lambda obj: yaml.safe_dump(obj, sort_keys=False, width=1000)  # noqa: E731
    files = {
        HERE / "prometheus/rules/paysys.yml": "# Generated by infra/observability.py\n"
        + dump(prometheus_rules()),
        HERE / "prometheus/rules/paysys_test.yml": "# Generated by infra/observability.py\n"
        + dump(promtool_tests()),
        HERE / "grafana/provisioning/alerting/paysys.yml": "# Generated by infra/observability.py\n"
        + dump(grafana_alerting()),
    }
    for d in DASHBOARDS:
        files[HERE / f"grafana/dashboards/{d.uid}.json"] = (
            json.dumps(grafana_dashboard(d), indent=2) + "\n"
        )
    return files


def main() -> None:
    check = "--check" in sys.argv
    stale = []
    for path, text in outputs().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print("stale generated files:", *stale, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
