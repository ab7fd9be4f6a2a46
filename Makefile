# Two entry points: `make run` (the main job) and `make test` (the suite). Each creates .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup lint clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Pin torch first: this machine has a local CPU wheel of 2.13.0; an unpinned torch pulls GBs of CUDA.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# One torch thread per process unless THREADS=N (or OMP_NUM_THREADS) says otherwise: see `unlearnkit run --help`.
THREADS ?=
run: $(STAMP)
	$(BIN)/unlearnkit run $(if $(THREADS),--threads $(THREADS))

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check unlearnkit tests benchmarks

bench: $(STAMP)
	$(BIN)/unlearnkit bench --dataset digits --seeds 0,1,2 --out results/bench-digits

clean:
	rm -rf $(VENV) .unlearnkit_cache runs
