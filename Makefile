# The two quickstart commands: `make demo` (the end-to-end demo on the embedded defaults) and
# `make test` (everything CI runs). Both install what they need into .venv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint typecheck services runtime-test bench reliability fuzz clean

$(BIN)/compute-ledger: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/compute-ledger

demo: install
	$(BIN)/compute-ledger demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

services: install
	$(BIN)/python .ci/require_services.py

test: install lint typecheck services
	$(BIN)/pytest
	$(MAKE) runtime-test

# The JS runtime (runtime/): its generated files current, installed from package-lock.json,
# type-checked, then `npm test` (unit tests, and integration tests against this .venv's stack).
runtime-test: install
	$(BIN)/python runtime/scripts/generate_contract.py --check
	cd runtime && npm ci --no-audit --no-fund && npm run typecheck && npm test

bench: install
	$(BIN)/python -m bench.ledger_bench
	$(BIN)/python -m bench.saga_bench
	$(BIN)/python -m bench.finops_bench
	$(BIN)/python -m bench.cli_bench
	$(BIN)/python -m bench.api_bench

# Kills, restarts and outages under load (200 holds at concurrency 50 per scenario), each scenario
# on a stack of its own; the table goes to stdout, bench/results/reliability.{json,md}.
reliability: install
	$(BIN)/python -m bench.reliability --holds 200 --concurrency 50

# The Hypothesis fuzz of the public API and the CLI, with more examples than CI runs.
fuzz: install
	FUZZ_SCALE=10 $(BIN)/pytest tests/fuzz -q

clean:
	rm -rf $(VENV) .compute-ledger .pytest_cache .mypy_cache .ruff_cache runtime/node_modules
