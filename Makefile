# Thin wrappers; the real work is in scripts/ and the huracan CLI.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.install-stamp

.PHONY: install up down status test test-unit lint check-deploy format demo bench bench-peers-env clean

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

## The alert rules and the compose Prometheus config, checked by Prometheus' own promtool
## (Debian's prometheus package; scripts/services.sh install puts it there).
check-deploy:
	@command -v promtool >/dev/null || scripts/services.sh install
	promtool check rules deploy/prometheus/alerts.yml
	promtool check config deploy/prometheus/prometheus.yml

format: install
	.venv/bin/ruff format huracan tests benchmarks
	.venv/bin/ruff check --fix huracan tests benchmarks

## The test command: installs everything, starts the services, lints, runs every test.
## Unit and integration tests run in TEST_WORKERS pytest-xdist processes (they share nothing but
## the services: every test has topics, streams and schemas of its own), so one test's waiting
## for a worker overlaps another's work. The reliability tests stop and start the services, so
## they run afterwards, alone. Both parts always run; the target fails if either did.
TEST_WORKERS ?= 3

test: install up lint check-deploy
	@status=0; \
	$(PY) -m pytest -p no:cacheprovider -ra -n $(TEST_WORKERS) --dist worksteal \
		tests/unit tests/integration || status=$$?; \
	$(PY) -m pytest -p no:cacheprovider -ra tests/reliability || status=$$?; \
	exit $$status

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
