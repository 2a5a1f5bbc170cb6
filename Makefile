# Scorehouse. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen
export PREFECT_HOME ?= $(CURDIR)/.prefect
export DO_NOT_TRACK := 1

.PHONY: help env demo test check format status clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

.venv/.synced: uv.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

env: .venv/.synced ## create or update the environment in .venv from uv.lock

demo: env ## reset the run-time folders, train, and score simulated days of arrivals
	$(RUN) scorehouse demo

test: env ## format, lint and type checks, then the whole test suite
	$(MAKE) --no-print-directory check
	$(RUN) pytest

check: env ## format check, lint and type check
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy

format: env ## reformat the code and apply safe lint fixes
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

status: env ## counts, champion and last batches in the warehouse
	$(RUN) scorehouse status

clean: ## remove the environment and every run-time output
	rm -rf .venv .prefect .run tests/output
	find data/warehouse data/incoming data/feedback data/processed data/rejected artifacts/models artifacts/reports \
	  -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
