# The two commands of the README: `make demo` runs the daemon on its embedded simulated Tuya
# service; `make test` runs the whole test suite against a real Pulsar broker and PostgreSQL.
# Both install what they need (virtualenv, Python packages, the Maven-resolved broker,
# PostgreSQL from Debian packages) on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint test-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tuya-events demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-deps: $(STAMP)
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-promtool.sh
	bash scripts/ensure-deploy-tools.sh
	$(BIN)/python -m tests.pulsar prepare

test: lint test-deps
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/decode.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
