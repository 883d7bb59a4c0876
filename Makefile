# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install pinned deps, run the nightly flow on a simulated month
#   make test   - create .venv, install pinned deps, run the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast lint bench clean deploy-check

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/llmopt demo

# make test: four workers on two cores, because the end-to-end tests spend much of their time
# waiting on servers and schedulers (2026-12-01, quiet machine, 753 tests: -n 2 8 min 4 s at
# 1.6 cores busy on average, -n 3 6 min 9 s, -n 4 6 min 0 s; a faster machine the same day,
# 775 tests: -n 3 4 min 33 s and 4 min 39 s, -n 4 4 min 6 s and 4 min 16 s, -n 5 4 min 38 s).
# --dist load hands out tests one by one in tests/conftest.py's order (longest
# modules first), which balances the few multi-minute end-to-end tests across the workers
# (pytest 9.2 + xdist 3.8 ignore xdist_group: xdist sets item._nodeid, which pytest 9.2 no
# longer reads, so --dist loadgroup was the same as load). A clean-clone run with --dist loadfile
# took 15 min of pytest for 753 tests (2026-12-01) against 8 min in all for 702 tests with load
# the day before: whole end-to-end modules queued on one worker.
# make test-fast: --dist loadfile sends each module whole to one worker, so its module fixtures
# are built once; --no-loadscope-reorder keeps the conftest order. Random order:
# PYTEST_ARGS=-prandomly.
DIST := -n 2 --dist loadfile --no-loadscope-reorder
# These machines set PYTHONDONTWRITEBYTECODE=1, so every pytest worker rewrote the asserts of
# all test modules again on each run (~3 s per worker); __pycache__/ is gitignored.
unexport PYTHONDONTWRITEBYTECODE

test: $(STAMP)
	$(BIN)/python -m pytest -n 4 --dist load $(PYTEST_ARGS)

# The edit loop: everything but the slow, end-to-end and PostgreSQL tests (figures in the
# README, Development).
test-fast: $(STAMP)
	$(BIN)/python -m pytest $(DIST) -m "not slow and not e2e and not postgres" $(PYTEST_ARGS)

# docs/deploying.md's walkthrough against a real Prefect server, scheduler and worker (~2-4 min);
# also part of `make test`.
deploy-check: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -q tests/e2e_tests/test_deploying_walkthrough.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

BENCHES := simulator ingest ingest_shapes experiments aa_nightly search allocation routing loop monitoring registry nightly scale

# Full-size benchmarks (tens of minutes on 2 cores); `make bench QUICK=--quick` for a smoke run.
# Each prints a table and writes data/benchmarks/<name>.json beside its DuckDB / scipy baseline.
bench: $(STAMP)
	for name in $(BENCHES); do $(BIN)/python tests/benchmarks/bench_$$name.py $(QUICK) || exit 1; done

clean:
	rm -rf $(VENV) var data/warehouse.duckdb* data/sim data/registry data/runs mlflow/mlflow.db mlflow/artifacts
