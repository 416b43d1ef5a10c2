# The two commands of the README: `make demo` runs the daemon on its embedded simulated Tuya
# service; `make test` runs the whole test suite against a real Pulsar broker and PostgreSQL.
# Both install what they need (virtualenv, Python packages, the Maven-resolved broker,
# PostgreSQL from Debian packages) on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint test-deps bench clean mutation

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
	bash scripts/ensure-mosquitto.sh
	bash scripts/ensure-promtool.sh
	bash scripts/ensure-deploy-tools.sh
	bash scripts/ensure-browser.sh
	$(BIN)/python -m tests.pulsar prepare

test: lint test-deps
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/decode.py

# Mutation testing of the core modules against their fast tests (docs/testing.md); slow, so not
# part of `make test`. One module at a time (MUTATE=tuya_events.backoff for one), each run
# collecting fresh test coverage; the table at the end reads mutants/, which mutmut keeps.
MUTATE ?= tuya_events.tuya.codec tuya_events.tuya.crypto tuya_events.tuya.envelope \
	tuya_events.tuya.events tuya_events.matching tuya_events.pipeline.policy tuya_events.backoff \
	tuya_events.openapi.signing tuya_events.config.interpolate tuya_events.config.secrets \
	tuya_events.config.loader tuya_events.observability.redact tuya_events.deadletter.record
MUTATION_JOBS ?= 2
# Address space per mutmut process (KiB): a mutant that loops while collecting results (one of
# redact.py's did, growing past 12 GB in a minute) fails with MemoryError instead.
MUTATION_MEMORY ?= 4000000

mutation: $(STAMP)
	mkdir -p mutants
	ulimit -v $(MUTATION_MEMORY); for module in $(MUTATE); do \
		echo "mutating $$module (log: mutants/$$module.log)"; \
		rm -f mutants/mutmut-stats.json; \
		TUYA_EVENTS_MUTATION=1 $(BIN)/mutmut run --max-children $(MUTATION_JOBS) "$$module.*" > "mutants/$$module.log" 2>&1 \
			|| { tail -30 "mutants/$$module.log"; exit 1; }; \
	done
	$(BIN)/python -m tests.support.mutation_report

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis mutants
