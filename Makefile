# The two commands of the README:
#   make run   install into .venv and start the server on its embedded defaults
#   make test  install everything the tests need, then lint, type-check and run the whole suite
#   make fuzz  the property tests of tests/fuzz/ with many more examples (docs/security.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run install install-test lint test fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

run: install
	$(BIN)/ressonance serve

install-test: $(BIN)/python
	bash scripts/install-test-deps.sh
	$(BIN)/pip install --quiet -e '.[test]'
	bash tests/e2e/install.sh

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# make test runs tests/fuzz/ with the "ci" profile (~100 examples a property); this is the long
# run: FUZZ_EXAMPLES per property (default 5000), failures kept in a database under /tmp
fuzz: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/fuzz -m fuzz --timeout=3600 $(FUZZ_ARGS)

# The benchmark suite (bench/, docs/performance.md); side by side with Soketi:
#   make bench BENCH_ARGS="--against soketi"
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) tests/e2e/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
