# The README's two commands: `make demo` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_BIN_DIR ?= $(shell ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit pg-binaries clean

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

demo: $(VENV)/.installed pg-binaries
	$(PY) compose/demo.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check ctxdb topology
	$(VENV)/bin/mypy

test: $(VENV)/.installed pg-binaries lint
	$(PY) -m pytest --cov --cov-report=term $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov site
