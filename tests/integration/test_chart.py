"""The Helm chart (deploy/helm/paysys) and the Containerfile: `make chart-check` (helm
lint, helm template, kubernetes-validate --strict) passes, and the rendered manifests
keep the chart's own rules."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from paysys.kit.crypto import DEV_BLIND_INDEX_KEY, DEV_DATA_KEYS
from paysys.kit.settings import DEV_INTERNAL_TOKEN, DEV_JWT_SECRET, RELAYED
from paysys_dev.stack import ROOT

CHART = ROOT / "deploy" / "helm" / "paysys"
SERVICES = ("gateway", "users", "wallets", "transactions", "payment-gateway", "notifications")
SCALED = ("gateway", "wallets", "transactions")
BUDGETED = (*SCALED, "users", "payment-gateway")
SECRET_ENV = {
    "PAYSYS_JWT_SECRET",
    "PAYSYS_INTERNAL_TOKEN",
    "PAYSYS_DATA_KEYS",
    "PAYSYS_BLIND_INDEX_KEY",
    "PAYSYS_IDEMPOTENCY_HASH_KEY",
    "PGPASSWORD",
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    if shutil.which("go") is None:
        pytest.fail("needs Go to build helm: make test expects it on the machine")
    proc = subprocess.run(
        ["bash", str(ROOT / "infra" / "chart-check.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = ROOT / ".run" / "chart"
    return {
        name: [d for d in yaml.safe_load_all((out / f"{name}.yaml").read_text()) if d]
        for name in ("default", "production")
    }


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    ]


def test_one_deployment_and_service_per_process_with_probes(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for docs in rendered.values():
        deployments = by_kind(docs, "Deployment")
        assert set(deployments) == {f"paysys-{s}" for s in SERVICES}
        assert set(by_kind(docs, "Service")) == set(deployments)
        for name, d in deployments.items():
            c = d["spec"]["template"]["spec"]["containers"][0]
            assert c["args"][0] == "serve"
            assert c["livenessProbe"]["httpGet"]["path"] == "/health", name
            assert c["readinessProbe"]["httpGet"]["path"] == "/ready", name
            # A rollout drops no request and cuts no saga step short: a preStop pause
            # while endpoints drop the pod, then a drain longer than the longest step
            # (15.8 s), inside the grace period.
            pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
            grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            env = {e["name"]: e.get("value") for e in c["env"]}
            drain = float(env["PAYSYS_GRACEFUL_SHUTDOWN_SECONDS"])
            assert pause >= 5 and grace >= 60, name
            assert drain > 15.8 and pause + drain < grace, name
            annotations = d["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
        assert set(by_kind(docs, "HorizontalPodAutoscaler")) == {f"paysys-{s}" for s in SCALED}
        assert set(by_kind(docs, "PodDisruptionBudget")) == {f"paysys-{s}" for s in BUDGETED}
        for pdb in by_kind(docs, "PodDisruptionBudget").values():
            assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"  # drains go on


def test_every_container_runs_unprivileged_with_limits(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for docs in rendered.values():
        specs = pod_specs(docs)
        assert len(specs) == 11  # six processes (five with a relay) and five migration Jobs
        for name, spec in specs:
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["runAsUser"] != 0, name
            assert spec["automountServiceAccountToken"] is False, name
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, name
                assert sc["readOnlyRootFilesystem"] is True, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
                assert {"cpu", "memory"} <= set(c["resources"]["limits"]), name
                assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name


def test_secrets_come_from_the_existing_secret_and_each_process_gets_only_its_own(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for docs in rendered.values():
        assert by_kind(docs, "Secret") == {}
        for name, spec in pod_specs(docs):
            env = {e["name"]: e for e in spec["containers"][0]["env"]}
            for key in SECRET_ENV & set(env):
                assert "value" not in env[key], (name, key)
                assert env[key]["valueFrom"]["secretKeyRef"]["key"] == key
            has = {k for k in SECRET_ENV if k in env}
            if name.endswith(("-wallets", "-gateway", "-payment-gateway")):
                assert has == {"PAYSYS_JWT_SECRET", "PAYSYS_INTERNAL_TOKEN", "PGPASSWORD"}, name
            assert env["PAYSYS_MIGRATE_ON_START"]["value"] == "false"
    # the production example takes its URLs from the Secret too
    prod = by_kind(rendered["production"], "Deployment")["paysys-wallets"]
    env = {e["name"]: e for e in prod["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "WALLETS_DATABASE_URL"
    # and nothing in the chart holds a development secret
    for path in CHART.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_text()
            for dev in (DEV_JWT_SECRET, DEV_INTERNAL_TOKEN, DEV_DATA_KEYS, DEV_BLIND_INDEX_KEY):
                assert dev not in text, path


def test_only_the_gateway_takes_traffic_from_outside(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    policies = by_kind(rendered["default"], "NetworkPolicy")
    deny = policies.pop("paysys-paysys-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]

    def callers(service: str) -> set[str]:
        rules = policies[f"paysys-{service}"]["spec"]["ingress"]
        found = set()
        for rule in rules:
            for source in rule.get("from", [{"anywhere": True}]):
                if "podSelector" in source:
                    found.add(source["podSelector"]["matchLabels"]["app.kubernetes.io/component"])
                elif "namespaceSelector" in source:
                    found.add("prometheus")
                else:
                    found.add("anywhere")
        return found

    # Who calls whom, read from the code: every `rt.client("<service>")` a service's
    # package makes, and the gateway's routes. Each call must be let through, and only
    # those (a policy that blocks one breaks that feature on a cluster, silently).
    calls = _code_calls()
    assert calls["users"] >= {"gateway", "wallets", "transactions"}  # the reading works
    assert callers("gateway") == {"anywhere", "prometheus"}
    for service in ("users", "wallets", "transactions", "payment_gateway", "notifications"):
        want = {c.replace("_", "-") for c in calls.get(service, set())} | {"prometheus"}
        assert callers(service.replace("_", "-")) == want, service
    prod = by_kind(rendered["production"], "NetworkPolicy")["paysys-gateway"]
    assert "namespaceSelector" in prod["spec"]["ingress"][0]["from"][0]


def _code_calls() -> dict[str, set[str]]:
    """callee -> its callers, read from the code: every `rt.client("<service>")` in a
    service's package, and the gateway's routes."""
    from paysys.gateway.routes import ROUTES

    calls: dict[str, set[str]] = {}
    for package in (ROOT / "src" / "paysys").iterdir():
        for path in package.glob("*.py"):
            for target in re.findall(r'rt\.client\(\s*"(\w+)"', path.read_text()):
                calls.setdefault(target, set()).add(package.name)
    for route in ROUTES:
        calls.setdefault(route.service, set()).add("gateway")
    return calls


def _code_datastores(service: str) -> set[str]:
    """What a service's Runtime connects to, read from its app.py."""
    app = (ROOT / "src" / "paysys" / service / "app.py").read_text()
    args = re.search(r"Runtime\((.*?)\)\n", app, re.S)
    assert args, service
    kw = args.group(1)
    uses = set()
    if "schema=" in kw:
        uses.add("postgres")
    if "redis=True" in kw:
        uses.add("redis")
    if "outbox=" in kw or "kafka=True" in kw:
        uses.add("kafka")
    if "mongo=True" in kw or "records=" in kw:
        uses.add("mongodb")
    tasks = ROOT / "src" / "paysys" / service / "tasks.py"
    if tasks.exists() and "class MailSender" in tasks.read_text():
        uses.add("smtp")
    if tasks.exists() and "class WebhookSender" in tasks.read_text():
        uses.add("webhooks")
    return uses


METADATA = ipaddress.ip_address("169.254.169.254")


def _reaches_metadata(rule: dict[str, Any]) -> bool:
    ports = {p["port"] for p in rule.get("ports", [])}
    if "to" not in rule:
        return not ports or bool(ports & {80, 443})  # what the metadata service answers on
    blocks = [peer["ipBlock"] for peer in rule["to"] if "ipBlock" in peer]
    return any(
        METADATA in ipaddress.ip_network(b["cidr"])
        and not any(METADATA in ipaddress.ip_network(e) for e in b.get("except", []))
        for b in blocks
    )


def test_egress_is_denied_but_for_dns_the_callees_and_the_datastores_in_use(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # Issue 25.6: each process reaches DNS, the siblings it calls and the datastores it
    # uses (both read from the code), nothing else; never the cloud metadata address.
    calls = _code_calls()
    ports = {s: 8000 + i for i, s in enumerate(("gateway", *SERVICES[1:]))}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    datastore_ports = {
        name: {p for p in d["ports"]}
        for name, d in values["networkPolicy"]["egress"]["datastores"].items()
    }
    for docs in rendered.values():
        policies = by_kind(docs, "NetworkPolicy")
        for service in ("gateway", "users", "wallets", "transactions", "payment_gateway",
                        "notifications"):  # fmt: skip
            name = service.replace("_", "-")
            rules = policies[f"paysys-{name}"]["spec"]["egress"]
            assert not any(_reaches_metadata(r) for r in rules), name
            dns, *rest = rules
            assert {p["port"] for p in dns["ports"]} == {53}
            callees = {
                peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                for r in rest
                for peer in r.get("to", [])
                if "podSelector" in peer and "namespaceSelector" not in peer
            }
            want = {c.replace("_", "-") for c, callers in calls.items() if service in callers}
            assert callees == want, name
            for r in rest:
                if any("podSelector" in p for p in r.get("to", [])):
                    [peer] = r["to"]
                    callee = peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                    assert [p["port"] for p in r["ports"]] == [ports[callee]], name
            stores = {
                store
                for r in rest
                if not any("podSelector" in p for p in r.get("to", []))
                for store, sp in datastore_ports.items()
                if {p["port"] for p in r["ports"]} == sp
            }
            assert stores == _code_datastores(service), name


def test_the_edge_lets_in_the_api_and_the_console_and_never_metrics_or_health(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # Issue 25.6: the production example takes traffic through an Ingress with TLS from a
    # Secret, and only from the ingress controller's namespace; a Gateway API HTTPRoute
    # is the other way in. Both pass the public paths only.
    from paysys.gateway.routes import ROUTES

    api = {"/" + r.path.split("/")[1] for r in ROUTES}
    want = api | {"/app", "/openapi.json"}
    assert by_kind(rendered["default"], "Ingress") == {}
    [ingress] = by_kind(rendered["production"], "Ingress").values()
    spec = ingress["spec"]
    assert spec["tls"] == [{"hosts": ["api.paysys.example.com"], "secretName": "paysys-api-tls"}]
    [rule] = spec["rules"]
    paths = {p["path"] for p in rule["http"]["paths"]}
    assert paths == want
    for p in rule["http"]["paths"]:
        assert p["backend"]["service"] == {"name": "paysys-gateway", "port": {"number": 8000}}
    for private in ("/metrics", "/ready", "/health", "/docs"):
        assert not any(private.startswith(p) for p in paths), private
    route = helm_template(
        "--set", "httpRoute.enabled=true",
        "--set", "httpRoute.parentRefs[0].name=public",
        "--set", "httpRoute.hostnames[0]=api.example.com",
    )  # fmt: skip
    [http] = by_kind(route, "HTTPRoute").values()
    [r] = http["spec"]["rules"]
    assert {m["path"]["value"] for m in r["matches"]} == want
    assert r["backendRefs"] == [{"name": "paysys-gateway", "port": 8000}]
    with pytest.raises(ValueError, match="tlsSecret"):
        helm_template("--set", "ingress.enabled=true", "--set", "ingress.host=x.example.com")
    # and the gateway's pods take traffic from the ingress controller only
    gw = by_kind(rendered["production"], "NetworkPolicy")["paysys-gateway"]
    assert gw["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]


def test_metrics_and_health_are_on_the_operations_port_for_prometheus_alone(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # Issue 25.6: /metrics, /health and /ready on a port of their own (the process
    # serves them there only, kit.app.OperationsPort), probed by the kubelet, scraped by
    # Prometheus, and let in from Prometheus's namespace alone.
    for docs in rendered.values():
        for name, spec in pod_specs(docs):
            if name.startswith("paysys-paysys-migrate"):
                continue
            c = spec["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["PAYSYS_METRICS_PORT"] == str(ports["metrics"]) == "9100", name
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert c[probe]["httpGet"]["port"] == "metrics", (name, probe)
        for name, svc in by_kind(docs, "Service").items():
            relay = {"relay-metrics"} if name != "paysys-gateway" else set()
            assert {p["name"] for p in svc["spec"]["ports"]} == {"http", "metrics"} | relay, name
        for name, policy in by_kind(docs, "NetworkPolicy").items():
            for rule in policy["spec"].get("ingress", []):
                ports = {p["port"] for p in rule["ports"]}
                from_prometheus = any("namespaceSelector" in f for f in rule.get("from", []))
                if 9100 in ports:
                    assert from_prometheus and ports == {9100, 9101}, name
    monitor = helm_template("--set", "metrics.serviceMonitor.enabled=true")
    [sm] = by_kind(monitor, "ServiceMonitor").values()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics", "relay-metrics"]


def test_each_service_with_an_outbox_runs_its_relays_beside_it(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # kit.relays: the relays publish from a container of their own in the service's
    # pod, on their own operations port; the service's container leaves them to it.
    for docs in rendered.values():
        for name, d in by_kind(docs, "Deployment").items():
            service = name.removeprefix("paysys-").replace("-", "_")
            containers = d["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in containers[0]["env"]}
            if service not in RELAYED:
                assert len(containers) == 1 and "PAYSYS_RELAYS" not in env, name
                continue
            relay = containers[1]
            assert env["PAYSYS_RELAYS"] == "apart", name
            assert relay["args"] == ["relay", service], name
            relay_env = {e["name"]: e.get("value") for e in relay["env"]}
            assert (
                relay_env["PAYSYS_LISTEN_PORT"] == "9101" and "PAYSYS_METRICS_PORT" not in relay_env
            )
            assert relay_env["DATABASE_URL"] == env["DATABASE_URL"], name
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert relay[probe]["httpGet"]["port"] == "relay-metrics", (name, probe)
            assert {p["containerPort"] for p in relay["ports"]} == {9101}, name


def test_migrations_run_once_before_install_and_upgrade(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    migrated = ("users", "wallets", "transactions", "payment_gateway", "notifications")
    for docs in rendered.values():
        jobs = by_kind(docs, "Job")
        assert set(jobs) == {f"paysys-paysys-migrate-{s.replace('_', '-')}" for s in migrated}
        deployments = by_kind(docs, "Deployment")
        for service in migrated:
            job = jobs[f"paysys-paysys-migrate-{service.replace('_', '-')}"]
            assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
            [c] = job["spec"]["template"]["spec"]["containers"]
            assert c["args"] == ["migrate", service]
            # Issue 25.1: each migration runs with its service's own environment, so a
            # service with a database of its own is migrated there, not in the shared one.
            served = deployments[f"paysys-{service.replace('_', '-')}"]["spec"]["template"]["spec"][
                "containers"
            ][0]
            own = {e["name"]: e for e in served["env"]}
            for var in c["env"]:
                if var["name"] in ("DATABASE_URL", "PAYSYS_JWT_SECRET", "PAYSYS_DATA_KEYS"):
                    assert var == own[var["name"]], (service, var["name"])
            assert {e["name"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})} == {
                e["name"] for e in served["env"] if "secretKeyRef" in e.get("valueFrom", {})
            }, service
    # Issue 25.4: the Jobs run under a hook-only account of their own; the release's
    # account is an ordinary resource (no hook: Helm tracks and upgrades it).
    for docs in rendered.values():
        accounts = by_kind(docs, "ServiceAccount")
        assert "annotations" not in accounts["paysys-paysys"]["metadata"]
        hook = accounts["paysys-paysys-migrate"]["metadata"]["annotations"]
        assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(hook["helm.sh/hook-weight"]) < 0  # made before the Jobs (weight 0)
        for job in by_kind(docs, "Job").values():
            spec = job["spec"]["template"]["spec"]
            assert spec["serviceAccountName"] == "paysys-paysys-migrate"
            assert spec["automountServiceAccountToken"] is False
        for deployment in by_kind(docs, "Deployment").values():
            assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "paysys-paysys"
    prod = by_kind(rendered["production"], "Job")

    def db_key(service: str) -> str:
        [c] = prod[f"paysys-paysys-migrate-{service}"]["spec"]["template"]["spec"]["containers"]
        [url] = [e for e in c["env"] if e["name"] == "DATABASE_URL"]
        return str(url["valueFrom"]["secretKeyRef"]["key"])

    assert db_key("wallets") == "WALLETS_DATABASE_URL"
    assert db_key("transactions") == "TRANSACTIONS_DATABASE_URL"
    assert db_key("users") == "DATABASE_URL"


def test_dashboards_and_alert_rules_ship_with_the_chart(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    [dashboards] = by_kind(rendered["default"], "ConfigMap").values()
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = {p.name for p in (ROOT / "infra" / "grafana" / "dashboards").glob("*.json")}
    assert set(dashboards["data"]) == shipped
    assert by_kind(rendered["default"], "PrometheusRule") == {}
    [rule] = by_kind(rendered["production"], "PrometheusRule").values()
    rules = yaml.safe_load((ROOT / "infra" / "prometheus" / "rules" / "paysys.yml").read_text())
    assert rule["spec"] == rules
    assert by_kind(rendered["production"], "ServiceMonitor")


def test_the_image_installs_the_locked_dependencies_and_runs_unprivileged() -> None:
    text = (ROOT / "Containerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) >= 2  # multi-stage
    final = stages[-1]
    assert re.search(r"^USER 10001", final, re.M)
    assert "uv sync --frozen --no-dev" in text and "npm ci" in text
    assert not re.search(r"pip install|apt-get install|gcc|build-essential", final)
    assert "pip install" not in text  # only the lock's set, through uv
    # The lock is the pyproject's: `uv sync --frozen` in the image installs exactly it.
    check = subprocess.run(
        ["uv", "lock", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    assert Path(ROOT / ".containerignore").read_text().count(".venv") == 1
    # Issue 25.8: every base comes from a build argument, which a release build sets to
    # a digest; no stage names a registry tag of its own.
    froms = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert froms and all(f.startswith("${") for f in froms), froms
    assert not re.search(r"COPY --from=[a-z0-9.-]+\.[a-z]+/", text)  # no image by tag


def test_guardrails_spread_budgets_checksum_and_digest(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # Issue 25.8: every Deployment spreads over zones and nodes; users and
    # payment-gateway have budgets too; a change of configuration rolls the pods.
    for docs in rendered.values():
        for name, d in by_kind(docs, "Deployment").items():
            spec = d["spec"]["template"]["spec"]
            keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
            assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
            assert d["spec"]["template"]["metadata"]["annotations"]["checksum/config"], name
        budgets = by_kind(docs, "PodDisruptionBudget")
        assert {"paysys-users", "paysys-payment-gateway"} <= set(budgets)
    digest = "sha256:" + "a" * 64
    out = helm_template("--set", f"image.digest={digest}")
    images = {c["image"] for _, spec in pod_specs(out) for c in spec["containers"]}
    assert images == {f"registry.example.com/paysys@{digest}"}


def test_smtp_credentials_reach_notifications_alone_and_only_with_starttls(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # Issue 25.7: the production example points at 587 with STARTTLS and AUTH; the
    # credentials come from the Secret, to the one process that mails.
    for values, docs in rendered.items():
        for name, spec in pod_specs(docs):
            env = {e["name"]: e for e in spec["containers"][0]["env"]}
            mails = name.endswith("-notifications") and values == "production"
            assert ("SMTP_PASSWORD" in env) is mails, (values, name)
            if mails:
                assert env["SMTP_STARTTLS"]["value"] == "true"
                for key in ("SMTP_USERNAME", "SMTP_PASSWORD"):
                    assert env[key]["valueFrom"]["secretKeyRef"] == {
                        "name": "paysys-prod",
                        "key": key,
                    }


def test_kafka_security_and_durability_reach_every_process(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # Issue 25.7: the production example talks SASL_SSL with SCRAM, credentials from the
    # Secret, and creates topics with 3 replicas, 2 in sync.
    for name, spec in pod_specs(rendered["production"]):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["PAYSYS_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", name
        assert env["PAYSYS_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512", name
        assert env["PAYSYS_KAFKA_REPLICATION_FACTOR"]["value"] == "3", name
        assert env["PAYSYS_KAFKA_MIN_INSYNC_REPLICAS"]["value"] == "2", name
        for key in ("PAYSYS_KAFKA_SASL_USERNAME", "PAYSYS_KAFKA_SASL_PASSWORD"):
            assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "paysys-prod", "key": key}
    for name, spec in pod_specs(rendered["default"]):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["PAYSYS_KAFKA_SECURITY_PROTOCOL"]["value"] == "PLAINTEXT", name
        assert "PAYSYS_KAFKA_SASL_PASSWORD" not in env, name


def test_extra_env_takes_plain_values_and_value_from(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # Issue 25.7: a setting can come from a Secret or ConfigMap of the platform's.
    ref = {"secretKeyRef": {"name": "platform", "key": "hops"}}
    out = helm_template(
        "--set", "extraEnv.PAYSYS_TRUSTED_PROXY_HOPS.valueFrom.secretKeyRef.name=platform",
        "--set", "extraEnv.PAYSYS_TRUSTED_PROXY_HOPS.valueFrom.secretKeyRef.key=hops",
        "--set", "extraEnv.PAYSYS_LOG_LEVEL=DEBUG",
    )  # fmt: skip
    for name, spec in pod_specs(out):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["PAYSYS_TRUSTED_PROXY_HOPS"] == {
            "name": "PAYSYS_TRUSTED_PROXY_HOPS",
            "valueFrom": ref,
        }, name
        assert env["PAYSYS_LOG_LEVEL"] == {"name": "PAYSYS_LOG_LEVEL", "value": "DEBUG"}, name


def helm_template(*args: str) -> list[dict[str, Any]]:
    helm = ROOT / ".run" / "bin" / "helm"
    proc = subprocess.run(
        [
            str(helm),
            *("template", "paysys", str(ROOT / "deploy" / "helm" / "paysys")),
            *("--kube-version", "1.34.0", *args),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise ValueError(proc.stderr)
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.mark.parametrize(
    "values",
    [
        ("--set", "environment=local"),
        ("--set", "environment=test"),
        ("--set", "extraEnv.PAYSYS_ENABLE_FAULT_HOOKS=true"),
        ("--set", "extraEnv.PAYSYS_JWT_SECRET=in-values"),
        ("--set", "existingSecret="),
        ("--set", "image.digest=latest"),
        ("--set", "image.tag=", "--set", "image.digest="),
        ("--set", "smtp.auth=true", "--set", "smtp.starttls=false"),
        ("--set", "kafka.securityProtocol=SASL_PLAINTEXT", "--set", "kafka.saslMechanism=PLAIN"),
    ],
)
def test_values_that_must_never_reach_a_cluster_are_refused(
    rendered: dict[str, list[dict[str, Any]]], values: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match=r"values don't meet the specifications"):
        helm_template(*values)


def test_service_down_fires_for_every_service_as_the_service_monitor_labels_it(
    tmp_path: Path,
) -> None:
    # Issue 25.5: under the ServiceMonitor, a series' job is the Service's label named by
    # jobLabel. Every Service's derived job must be one that the ServiceDown rule (and
    # the dashboard's `up` panel) matches: promtool runs the rule on those series.
    if shutil.which("promtool") is None:
        pytest.fail("needs promtool (Debian's prometheus): make test installs it")
    docs = helm_template("--set", "metrics.serviceMonitor.enabled=true")
    [monitor] = by_kind(docs, "ServiceMonitor").values()
    # The operator's rule: the Service's label named by jobLabel, else the Service's name.
    label = monitor["spec"].get("jobLabel")
    jobs = sorted(
        s["metadata"]["labels"][label] if label else s["metadata"]["name"]
        for s in by_kind(docs, "Service").values()
    )
    assert len(jobs) == 6
    rules = ROOT / "infra" / "prometheus" / "rules" / "paysys.yml"
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'up{{job="{job}", instance="{job}:8000"}}', "values": "0 0 0 0 0 0"}
                    for job in jobs
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "ServiceDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "page",
                                    "job": job,
                                    "instance": f"{job}:8000",
                                },
                                "exp_annotations": {
                                    "summary": f"{job} is down",
                                    "description": f"Prometheus cannot scrape {job} at {job}:8000.",
                                    "runbook": "docs/operations.md#servicedown",
                                },
                            }
                            for job in jobs
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "service_monitor_test.yml"
    path.write_text(yaml.safe_dump(test))
    proc = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dashboard = (ROOT / "infra" / "grafana" / "dashboards" / "paysys-overview.json").read_text()
    [panel] = re.findall(r'up\{job=~\\"([^\\]+)\\"\}', dashboard)
    assert all(re.fullmatch(panel, job) for job in jobs), (panel, jobs)
