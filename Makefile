# Thin wrappers; the real work is in scripts/ and the huracan CLI.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.install-stamp

.PHONY: install up down status test test-unit test-integration lint format demo bench bench-peers-env clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

up: install
	scripts/services.sh up

down:
	scripts/services.sh down

status:
	scripts/services.sh status

lint: install
	.venv/bin/ruff check huracan tests benchmarks
	.venv/bin/ruff format --check huracan tests benchmarks
	.venv/bin/mypy

format: install
	.venv/bin/ruff format huracan tests benchmarks
	.venv/bin/ruff check --fix huracan tests benchmarks

## The test command: installs everything, starts the services, lints, runs every test.
test: install up lint
	$(PY) -m pytest -p no:cacheprovider -ra

test-unit: install
	$(PY) -m pytest tests/unit -q

demo: install up
	.venv/bin/huracan demo

bench: install up
	$(PY) -m benchmarks

## The Quix Streams peer's own venv (benchmarks/.venv-quix); bench_peers also builds it on first use.
bench-peers-env: install
	$(PY) -m benchmarks.peers.env

clean:
	rm -rf .venv benchmarks/.venv-quix .pytest_cache .mypy_cache .ruff_cache
