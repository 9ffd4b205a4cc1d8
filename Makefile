# HITA: `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
USERS ?= 100000
MINUTES ?= 30
# make chaos: the Redis topology (standalone, sentinel or cluster) and, if set,
# the instances' CACHE_OUTBOX_SWEEP_MS (30000: the sweep no longer hides the suspect logic)
TOPOLOGY ?= standalone
TOPOLOGIES ?=
TREES ?=
ONLY ?=
CHAOS_MINUTES ?= 20
SWEEP_MS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test lint fmt migrate seed bench bench-cache bench-http bench-serving bench-workers bench-writes chaos chaos-sentinel chaos-cluster faults overload soak coverage clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

# promtool (Debian's prometheus package), Debian's chromium, redis-server (7.0,
# built with TLS) and pgbouncer, for the rules', the console's, the TLS and the
# PgBouncer tests: installed with apt-get when missing and run as root;
# otherwise those tests skip, saying why.
TOOLS := prometheus chromium redis-server pgbouncer
TOOLS_STAMP := $(VENV)/.tools-stamp
$(TOOLS_STAMP): $(STAMP)
	@if command -v promtool >/dev/null && [ -x /usr/bin/chromium ] \
	    && [ -x /usr/bin/redis-server ] && [ -x /usr/sbin/pgbouncer ]; then touch $@; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing $(TOOLS) (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(TOOLS) >/dev/null && touch $@; } \
	  || echo "apt-get could not install $(TOOLS): their tests will skip"; \
	else echo "one of $(TOOLS) is missing and only root may apt-get them: their tests will skip"; fi

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,embedded,bench]'
	touch $(BENCH_STAMP)

install: $(STAMP) ## create .venv and install HITA with its dev and embedded extras

run: $(STAMP) ## start the service (embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL are set)
	$(BIN)/hita serve

test: lint $(TOOLS_STAMP) ## lint, then the whole test suite (what CI runs; as root, apt-get installs promtool, chromium, redis-server and pgbouncer first)
	$(BIN)/pytest

lint: $(BENCH_STAMP) ## ruff and mypy --strict (scripts import the bench extra's peers)
	$(BIN)/ruff check hita tests scripts
	$(BIN)/ruff format --check hita tests scripts
	$(BIN)/mypy

fmt: $(STAMP) ## format and fix what ruff can
	$(BIN)/ruff format hita tests scripts
	$(BIN)/ruff check --fix hita tests scripts

migrate: $(STAMP) ## apply pending migrations
	$(BIN)/hita migrate

seed: $(STAMP) ## load USERS realistic users (default 100000)
	$(BIN)/hita seed --users $(USERS)

bench: $(STAMP) ## run the benchmarks and update docs/benchmarks.md
	$(BIN)/python scripts/bench_dashboard.py

bench-cache: $(BENCH_STAMP) ## a cache hit in one process: HITA, raw GET, cashews, aiocache (~3 min)
	$(BIN)/python scripts/bench_cache.py

bench-http: $(BENCH_STAMP) ## wrk against the aiohttp ceiling, peers and HITA's routes (needs wrk; TOPOLOGIES="sentinel cluster" adds L1 on those; TREES="label=dir ..." compares checkouts instead; ONLY=text keeps the rows that hold it)
	@command -v wrk >/dev/null || { echo "bench-http needs wrk: apt-get install -y wrk"; exit 2; }
	$(BIN)/python scripts/bench_http.py --seconds 5 --reps 3 --users 3000$(foreach t,$(TOPOLOGIES), --topology $(t))$(foreach t,$(TREES), --hita-tree $(t))$(if $(ONLY), --only '$(ONLY)')

bench-serving: $(BENCH_STAMP) ## hello world on aiohttp's serving loop and on HITA's, with and without the malloc pin (needs wrk, ~2 min), into docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "bench-serving needs wrk: apt-get install -y wrk"; exit 2; }
	$(BIN)/python scripts/bench_serving.py

chaos: $(STAMP) ## two instances under partial Redis/PostgreSQL faults (CHAOS_MINUTES=20; TOPOLOGY=, SWEEP_MS=), every answer checked; into docs/chaos.md
	$(BIN)/python scripts/chaos.py --topology $(TOPOLOGY) --minutes $(CHAOS_MINUTES) --faults-each 5 --clients 16 $(if $(SWEEP_MS),--sweep-ms $(SWEEP_MS) )--report docs/chaos.md

faults: $(STAMP) ## issue-style table: ordinary events under partial faults, tried from outside (~2 min), into docs/chaos.md
	$(BIN)/python scripts/faults_table.py --report docs/chaos.md

chaos-sentinel: ## make chaos on a master, a replica and 3 sentinels
	$(MAKE) chaos TOPOLOGY=sentinel

chaos-cluster: ## make chaos on a Redis Cluster, 3 primaries and 3 replicas
	$(MAKE) chaos TOPOLOGY=cluster

BEFORE ?= 68752fb
bench-writes: $(STAMP) ## writes and reads of this tree against BEFORE (a commit; default: before reader leases), into docs/benchmarks.md
	@test -d .hita/before-$(BEFORE) || git worktree add --detach .hita/before-$(BEFORE) $(BEFORE)
	$(BIN)/python scripts/bench_writes.py --tree .hita/before-$(BEFORE) --tree . --seconds 8 --rounds 3 --report docs/benchmarks.md

bench-workers: $(STAMP) ## requests/s with 1 and 2 workers (wrk), into docs/benchmarks.md
	$(BIN)/python scripts/bench_workers.py

overload: $(STAMP) ## admission control: 1,000 connections with Redis down (needs wrk), into docs/benchmarks.md
	$(BIN)/python scripts/bench_overload.py

soak: $(STAMP) ## MINUTES (default 30) of mixed load with Redis faults, into docs/soak.md
	$(BIN)/python scripts/soak.py --minutes $(MINUTES) --rate 30

coverage: $(STAMP) ## the test suite with a coverage report
	$(BIN)/pytest --cov --cov-report=term

clean: ## remove the virtualenv, embedded data and caches
	rm -rf $(VENV) .hita .pytest_cache .mypy_cache .ruff_cache .hypothesis htmlcov .coverage
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
