# One entry point for set-up and running. Every target creates .venv when missing and installs
# the pinned dependencies (constraints.txt) with every extra (ingest, postgres, plots, serve, pretrained, ray, export, clip, dev), so a
# fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt --config-settings editable_mode=compat -e '.[ingest,postgres,plots,serve,pretrained,ray,export,clip,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/circuits demo

# Two or more test processes (pytest-xdist; up to 4 where there are cores); an idle process takes
# tests from a busy one (worksteal: 121-124 s against 134 s with whole modules per process, on
# 2 cores; docs/results.md, "Test suite"). `pytest -n0` runs in one process.
PYTEST_WORKERS := -n auto --maxprocesses=4 --dist worksteal
# Many tests start `circuits` or python processes; where the environment sets PYTHONDONTWRITEBYTECODE,
# each compiles every module it imports again (1.8-2.5 s of the suite on 2 cores), so tests keep .pyc.
PYTEST_ENV := PYTHONDONTWRITEBYTECODE=

test: $(STAMP)
	$(PYTEST_ENV) $(BIN)/python -m pytest -q $(PYTEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-all: $(STAMP)
	$(PYTEST_ENV) $(BIN)/python -m pytest -q -m '' $(PYTEST_WORKERS)

bench: $(STAMP)
	$(BIN)/python bench/bench_catalog.py
	$(BIN)/python bench/bench_cla.py
	$(BIN)/python bench/bench_queries.py
	$(BIN)/python bench/bench_cli.py

clean:
	rm -rf $(VENV) build *.egg-info
