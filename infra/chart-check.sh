#!/usr/bin/env bash
# make chart-check: builds helm from the Go module proxy, lints the chart, renders it
# with the default values and with the production example, and validates every
# rendered manifest against the Kubernetes API's schemas (strict).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN="${PAYSYS_RUN_DIR:-$ROOT/.run}"
CHART="$ROOT/deploy/helm/paysys"
HELM_VERSION="v3.22.0"                 # a version the Go module proxy serves here
KUBE_VERSION="${KUBE_VERSION:-1.34.0}" # the Kubernetes version the manifests are checked against
HELM="$RUN/bin/helm"
OUT="$RUN/chart"
mkdir -p "$RUN/bin" "$OUT"

if [ ! -x "$HELM" ] || [ ! -f "$RUN/bin/.helm-$HELM_VERSION" ]; then
  echo "[chart] building helm $HELM_VERSION from the Go module proxy" >&2
  (cd "$RUN" && GOBIN="$RUN/bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
  touch "$RUN/bin/.helm-$HELM_VERSION"
fi

echo "[chart] helm lint" >&2
"$HELM" lint --strict "$CHART"
"$HELM" lint --strict "$CHART" -f "$CHART/values-production.yaml"

echo "[chart] helm template (default values, production example)" >&2
"$HELM" template paysys "$CHART" --kube-version "$KUBE_VERSION" >"$OUT/default.yaml"
"$HELM" template paysys "$CHART" --kube-version "$KUBE_VERSION" \
  -f "$CHART/values-production.yaml" >"$OUT/production.yaml"

# docs/kubernetes.md's install command, as written there (helm install -> helm template).
"$HELM" template paysys "$CHART" --kube-version "$KUBE_VERSION" \
  --set postgres.url=postgresql+asyncpg://paysys@pg.internal:5432/paysys \
  --set redis.url=redis://redis.internal:6379/0 \
  --set kafka.bootstrapServers=kafka.internal:9092 \
  --set mongodb.url=mongodb://mongo.internal:27017/ \
  --set smtp.host=smtp.internal --set image.repository=registry.example.com/paysys \
  >"$OUT/readme.yaml"
"$HELM" template paysys "$CHART" --kube-version "$KUBE_VERSION" \
  --set services.wallets.autoscaling.maxReplicas=20 >/dev/null

echo "[chart] kubernetes-validate --strict, Kubernetes $KUBE_VERSION" >&2
# The Prometheus operator's kinds (ServiceMonitor, PrometheusRule) are custom resources
# with no schema in the Kubernetes API: they are checked by the chart's own tests.
for f in default production readme; do
  "$ROOT/.venv/bin/kubernetes-validate" --strict --kubernetes-version "$KUBE_VERSION" \
    "$OUT/$f.yaml"
done
echo "[chart] ok: $OUT/default.yaml, $OUT/production.yaml" >&2
