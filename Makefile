# paysys: `make run` starts everything in the foreground; `make test` runs every check.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run stop test lint infra infra-down bench chaos fuzz screenshots chart-check

run:
	@bash infra/stack.sh install
	@PAYSYS_LOCAL_TLS=$(TLS) PAYSYS_INSTANCES=$(or $(PAYSYS_INSTANCES),1) exec $(PY) -m paysys_dev run

stop:
	@$(PY) -m paysys_dev stop

infra:
	@bash infra/stack.sh up

infra-down:
	@bash infra/stack.sh down

lint:
	@bash infra/stack.sh install
	.venv/bin/ruff check src tests bench infra
	.venv/bin/ruff format --check src tests bench infra
	.venv/bin/mypy

test: lint
	@bash infra/stack.sh install-browser
	@bash infra/stack.sh up postgres redis kafka mongodb smtp prometheus alertmanager
	$(PY) -m pytest -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

bench:
	@bash infra/stack.sh up
	$(PY) bench/load.py $(if $(PAYSYS_INSTANCES),--instances $(PAYSYS_INSTANCES))

# A seeded random workload under faults, then every invariant checked (docs/reliability.md).
chaos:
	@bash infra/stack.sh up
	$(PY) bench/chaos.py $(if $(SEED),--seed $(SEED)) $(if $(PAYSYS_INSTANCES),--instances $(PAYSYS_INSTANCES))

# Schemathesis over the gateway's public document with many examples per operation.
fuzz:
	@bash infra/stack.sh up postgres redis kafka mongodb smtp
	PAYSYS_FUZZ_EXAMPLES=$(or $(EXAMPLES),300) PAYSYS_FUZZ_STATEFUL=$(or $(SCENARIOS),300) PAYSYS_FUZZ_SUMMARY=docs/reliability.md \
		$(PY) -m pytest -p no:cacheprovider tests/e2e/test_api_fuzz.py

# The console's screenshots in docs/console/ (the README shows them), from its browser tests.
screenshots:
	@bash infra/stack.sh install-browser
	@bash infra/stack.sh up postgres redis kafka mongodb smtp
	PAYSYS_CONSOLE_SHOTS=docs/console $(PY) -m pytest -p no:cacheprovider tests/e2e/test_console.py

# The Helm chart: helm (built from the Go module proxy) lint and template, and every
# rendered manifest validated strictly against the Kubernetes API. Part of make test.
chart-check:
	@bash infra/stack.sh install
	@bash infra/chart-check.sh
