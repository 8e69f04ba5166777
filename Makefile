# The README's two commands: `make demo` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_BIN_DIR ?= $(shell ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
PYTEST_ARGS ?=
# Patroni's venv: readable by the unprivileged server user, so never under /root.
PATRONI_VENV ?= /opt/ctxdb-patroni

.PHONY: demo test lint typecheck unit pg-binaries cluster-deps clean docs bench

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

pg-binaries:
	@if [ -z "$(PG_BIN_DIR)" ] || [ ! -x "$(PG_BIN_DIR)/initdb" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "PostgreSQL binaries missing: installing Debian's postgresql package"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }; \
	  else \
	    echo "PostgreSQL server binaries (initdb, postgres) not found: install them, e.g. 'sudo apt-get install postgresql', or set PG_BIN_DIR"; exit 1; \
	  fi; \
	fi

# etcd (Debian's) and Patroni for compose/cluster.py and the patroni_cluster fixture.
# Idempotent: a no-op when both are there. Built with Debian's /usr/bin/python3,
# since a venv of a Python under /root cannot run as the server user.
cluster-deps: pg-binaries
	@if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "etcd missing: installing Debian's etcd-server etcd-client"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >/dev/null || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >/dev/null; }; \
	  else \
	    echo "etcd not found: install it, e.g. 'sudo apt-get install etcd-server etcd-client'"; exit 1; \
	  fi; \
	fi
	@if ! $(PATRONI_VENV)/bin/patroni --version >/dev/null 2>&1; then \
	  echo "Patroni missing: installing patroni[etcd3] into $(PATRONI_VENV)"; \
	  if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; }; \
	  fi; \
	  /usr/bin/python3 -m venv --clear $(PATRONI_VENV) && \
	  $(PATRONI_VENV)/bin/pip install --quiet 'patroni[etcd3]' psycopg2-binary && \
	  chmod -R a+rX $(PATRONI_VENV); \
	fi

demo: $(VENV)/.installed pg-binaries
	$(PY) compose/demo.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check ctxdb topology
	$(VENV)/bin/mypy

test: $(VENV)/.installed pg-binaries cluster-deps lint
	$(PY) -m pytest --cov --cov-report=term $(PYTEST_ARGS)

# The documentation site into site/; --strict turns every warning (a broken link,
# a missing include, a stale API name) into a failure; never add --quiet, which hides
# the warnings from that count. tests/test_docs.py builds it too.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The benchmarks (not part of `make test`; tests/test_bench.py runs them once in
# --quick mode): writes docs/performance.md, docs/performance.json and the plots.
bench: $(VENV)/.installed pg-binaries
	$(PY) -m compose.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov site
