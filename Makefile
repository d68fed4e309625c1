# One entry point for every developer task. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: help setup demo check test lint format typecheck proto proto-check bench load-test clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)  ## create .venv and install baselined with the sidecar and dev extras

demo: $(STAMP)  ## run the end-to-end demo: model server + middleware + sidecar, regression caught
	$(VENV)/bin/baselined demo

check: $(STAMP)  ## everything CI runs: format, lint, types, proto stubs, tests
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) scripts/gen_proto.py --check
	$(PY) -m pytest -q

test: $(STAMP)  ## the tests only
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff lint
	$(PY) -m ruff check .

format: $(STAMP)  ## reformat and fix what ruff can fix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

typecheck: $(STAMP)  ## mypy --strict on middleware/ and sidecar/
	$(PY) -m mypy

proto: $(STAMP)  ## regenerate the protobuf/gRPC stubs under proto/
	$(PY) scripts/gen_proto.py

proto-check: $(STAMP)  ## fail if the committed stubs are stale
	$(PY) scripts/gen_proto.py --check

bench: $(STAMP)  ## run the load_tests benchmarks (prints figures and ratios)
	$(PY) load_tests/bench_middleware.py
	$(PY) load_tests/bench_ingest.py --grpc

load-test: $(STAMP)  ## the load-test suite: every DESIGN.md budget vs a bare baseline, one table (ARGS=--quick)
	$(PY) -m load_tests.suite $(ARGS)

clean:  ## remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
