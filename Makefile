# The README's two commands: `make demo` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_BIN_DIR ?= $(shell ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
# Two workers (pytest-xdist), each with its own servers; a file's tests stay on one worker.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?= --durations=20 -n $(PYTEST_WORKERS) --dist loadfile
# Patroni's venv: readable by the unprivileged server user, so never under /root.
PATRONI_VENV ?= /opt/ctxdb-patroni
# Pinned, so every machine runs the Patroni the tests and drills were measured with;
# compose/Dockerfile pins the same (tests/docs/test_packaging.py checks both and the venv).
PATRONI_VERSION := 4.1.5
PSYCOPG2_VERSION := 2.9.13

# Installs the Debian packages $(1) (as root), refreshing the package lists only if needed.
apt_install = DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(1) >/dev/null || \
	{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(1) >/dev/null; }

.PHONY: demo test lint typecheck unit pg-binaries python-venv cluster-deps clean docs bench

# python-venv is order-only: checked on every run, but it never forces a reinstall.
$(VENV)/.installed: pyproject.toml | python-venv
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . --group dev
	@touch $@

pg-binaries:
	@if [ -z "$(PG_BIN_DIR)" ] || [ ! -x "$(PG_BIN_DIR)/initdb" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "PostgreSQL binaries missing: installing Debian's postgresql package"; \
	    $(call apt_install,postgresql); \
	  else \
	    echo "PostgreSQL server binaries (initdb, postgres) not found: install them, e.g. 'sudo apt-get install postgresql', or set PG_BIN_DIR"; exit 1; \
	  fi; \
	fi

# Debian moves venv's ensurepip into python3-venv: without it `$(PYTHON) -m venv` fails.
python-venv:
	@if ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "python3-venv missing: installing Debian's python3-venv package"; \
	    $(call apt_install,python3-venv); \
	  fi; \
	  $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	    echo "$(PYTHON) cannot create a virtual environment (no ensurepip): install it, e.g. 'sudo apt-get install python3-venv', or set PYTHON"; exit 1; }; \
	fi

# etcd (Debian's) and Patroni for `python -m compose.patroni` and the patroni_cluster fixture.
# Idempotent: a no-op when etcd and the pinned Patroni are there. Built with Debian's /usr/bin/python3,
# since a venv of a Python under /root cannot run as the server user.
cluster-deps: pg-binaries
	@if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "etcd missing: installing Debian's etcd-server etcd-client"; \
	    $(call apt_install,etcd-server etcd-client); \
	  else \
	    echo "etcd not found: install it, e.g. 'sudo apt-get install etcd-server etcd-client'"; exit 1; \
	  fi; \
	fi
	@if [ "$$($(PATRONI_VENV)/bin/patroni --version 2>/dev/null)" != "patroni $(PATRONI_VERSION)" ]; then \
	  echo "Patroni $(PATRONI_VERSION) missing: installing patroni[etcd3]==$(PATRONI_VERSION) into $(PATRONI_VENV)"; \
	  $(MAKE) --no-print-directory python-venv PYTHON=/usr/bin/python3 && \
	  /usr/bin/python3 -m venv --clear $(PATRONI_VENV) && \
	  $(PATRONI_VENV)/bin/pip install --quiet 'patroni[etcd3]==$(PATRONI_VERSION)' \
	    'psycopg2-binary==$(PSYCOPG2_VERSION)' && \
	  chmod -R a+rX $(PATRONI_VENV); \
	fi

demo: $(VENV)/.installed pg-binaries
	$(PY) -m compose.demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check ctxdb topology compose
	$(VENV)/bin/mypy

test: $(VENV)/.installed pg-binaries cluster-deps lint
	$(PY) -m pytest --cov --cov-report=term $(PYTEST_ARGS)

# The documentation site into site/; --strict turns every warning (a broken link,
# a missing include, a stale API name) into a failure; never add --quiet, which hides
# the warnings from that count. tests/docs/test_docs.py builds it too.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The benchmarks (not part of `make test`; tests/compose/test_bench.py runs them once in
# --quick mode): writes docs/performance.md, docs/performance.json and the plots.
bench: $(VENV)/.installed pg-binaries
	$(PY) -m compose.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov site
