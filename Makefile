# paysys: `make run` starts everything in the foreground; `make test` runs every check.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run stop test lint infra infra-down bench

run:
	@bash infra/stack.sh install
	@PAYSYS_LOCAL_TLS=$(TLS) exec $(PY) -m paysys.cli run

stop:
	@$(PY) -m paysys.cli stop

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
	@bash infra/stack.sh up postgres redis kafka mongodb smtp prometheus alertmanager
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench:
	@bash infra/stack.sh up
	$(PY) bench/load.py
