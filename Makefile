# One task runner for people and CI. `make study` and `make test` are the README's quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup study test test-fast lint typecheck check schema clean

# torch is installed first and pinned: 2.13.0 resolves to the CPU build here, anything newer pulls CUDA.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

study: setup
	$(BIN)/tutor study

test: setup
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

schema: setup
	$(BIN)/tutor schema > rubrics/rubric.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
