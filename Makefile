# Scorehouse. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen
export PREFECT_HOME ?= $(CURDIR)/.prefect
export DO_NOT_TRACK := 1

.PHONY: help env demo test check format status clean server worker deploy up down reports-ui dashboard bench bench-quick bench-dask bench-soak calibrate

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

# The libraries' bytecode is compiled once, here: where PYTHONDONTWRITEBYTECODE is set (as on CI), Python
# otherwise compiles them from source in every process (measured: importing the Dask worker's code took
# 15.1 s, 7.1 s compiled; a worker, a flow run, the Prefect server and each test subprocess pay it).
.venv/.synced: uv.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode
	@touch $@

env: .venv/.synced ## create or update the environment in .venv from uv.lock

demo: env ## reset the run-time folders, train, and score simulated days of arrivals
	$(RUN) scorehouse demo

test: env ## format, lint and type checks, then the whole test suite
	$(MAKE) --no-print-directory check
	$(RUN) pytest -n 2 --dist loadfile --durations=25

check: env ## format check, lint and type check
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy

format: env ## reformat the code and apply safe lint fixes
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

status: env ## counts, champion and last batches in the warehouse
	$(RUN) scorehouse status

# ------------------------------------------------------------------------------------------------
# The local stack, without Docker: the same topology as docker-compose.yml. Everything binds to the
# loopback address; PIDs, logs and the Prefect server's database live in .run/ (git-ignored).
#   make server | worker | reports-ui    one of them in the foreground (Ctrl-C stops it)
#   make up / make down                  all of them in the background, each stopped by its own PID
HOST := 127.0.0.1
PREFECT_PORT ?= 4200
DASHBOARD_PORT ?= 8501
REPORTS_PORT ?= 8000
POOL := scorehouse
RUN_DIR := $(CURDIR)/.run
# The Evidently workspace `monitor` writes its snapshots to: the reports folder of scorehouse.toml.
WORKSPACE ?= artifacts/reports/evidently
PY := $(CURDIR)/.venv/bin/python

# What the worker's flow runs and the deploy step need: the server, and the addresses a person's
# browser uses for the links the runs publish (flows/deployed.py).
STACK_ENV := PREFECT_API_URL=http://$(HOST):$(PREFECT_PORT)/api \
	SCOREHOUSE_DASHBOARD_URL=http://$(HOST):$(DASHBOARD_PORT) \
	SCOREHOUSE_REPORTS_URL=http://$(HOST):$(REPORTS_PORT)

# The commands, shared by the foreground targets and `make up` (tests/integration/test_compose.py checks
# that docker-compose.yml runs the same ones).
# The server's home (UI files, concurrency leases) is in .run/ too. Leases go to files, not memory: a lease
# held by a run when the server stops would otherwise be lost with its slot, and with the deployments'
# concurrency limit of 1 (prefect.yaml) that deployment would never run again. From files, the server
# frees the slot once the lease expires (5 minutes without a renewal).
SERVER_CMD := env PREFECT_HOME=$(RUN_DIR)/prefect-server \
	PREFECT_SERVER_DATABASE_CONNECTION_URL=sqlite+aiosqlite:///$(RUN_DIR)/prefect.db \
	PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect.server.concurrency.lease_storage.filesystem \
	PREFECT_UI_API_URL=http://$(HOST):$(PREFECT_PORT)/api \
	PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false \
	$(RUN) prefect server start --host $(HOST) --port $(PREFECT_PORT)
POOL_CMD := $(RUN) prefect work-pool create $(POOL) --type process --overwrite
DEPLOY_CMD := $(RUN) prefect --no-prompt deploy --all
WORKER_CMD := env $(STACK_ENV) $(RUN) prefect worker start --pool $(POOL) --type process --name scorehouse-local
DASHBOARD_CMD := $(RUN) streamlit run dashboard/app.py --server.headless true --browser.gatherUsageStats false \
	--server.address $(HOST) --server.port $(DASHBOARD_PORT) --client.toolbarMode viewer
REPORTS_CMD := $(RUN) evidently ui --workspace $(WORKSPACE) --host $(HOST) --port $(REPORTS_PORT)

# $(call start,NAME,COMMAND): run COMMAND in the background, in its own process group (set -m), logging to
# .run/logs/NAME.log, its PID in .run/NAME.pid; does nothing if that PID is alive.
define start
	@mkdir -p $(RUN_DIR)/logs
	@if [ -f $(RUN_DIR)/$(1).pid ] && kill -0 $$(cat $(RUN_DIR)/$(1).pid) 2>/dev/null; then \
	  echo "$(1): already running (pid $$(cat $(RUN_DIR)/$(1).pid))"; \
	else \
	  set -m; nohup $(2) > $(RUN_DIR)/logs/$(1).log 2>&1 < /dev/null & echo $$! > $(RUN_DIR)/$(1).pid; \
	  echo "$(1): started (pid $$!, log .run/logs/$(1).log)"; \
	fi
endef

# $(call wait_for,NAME,URL): wait until URL answers while NAME's process is alive; fail with the end of its
# log if it died (a port already taken by another process ends here too).
define wait_for
	@for i in $$(seq 1 120); do \
	  if ! kill -0 $$(cat $(RUN_DIR)/$(1).pid 2>/dev/null) 2>/dev/null; then \
	    echo "$(1): exited; the end of .run/logs/$(1).log:"; tail -n 20 $(RUN_DIR)/logs/$(1).log; exit 1; fi; \
	  if $(PY) -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' $(2) 2>/dev/null; then \
	    sleep 1; kill -0 $$(cat $(RUN_DIR)/$(1).pid) 2>/dev/null && { echo "$(1): answering at $(2)"; exit 0; }; fi; \
	  sleep 1; \
	done; echo "$(1): no answer at $(2) after 120 s; see .run/logs/$(1).log"; exit 1
endef

# $(call stop,NAME): SIGTERM to NAME's process group, SIGKILL after 15 s; then forget the PID file.
define stop
	@pidfile=$(RUN_DIR)/$(1).pid; \
	if [ ! -f $$pidfile ]; then echo "$(1): not started by make up"; exit 0; fi; \
	pid=$$(cat $$pidfile); \
	if kill -0 $$pid 2>/dev/null; then \
	  kill -TERM -- -$$pid 2>/dev/null || kill -TERM $$pid; \
	  for i in $$(seq 1 30); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
	  if kill -0 $$pid 2>/dev/null; then kill -KILL -- -$$pid 2>/dev/null || kill -KILL $$pid; echo "$(1): killed (pid $$pid)"; \
	  else echo "$(1): stopped (pid $$pid)"; fi; \
	else echo "$(1): was not running (stale pid $$pid)"; fi; \
	rm -f $$pidfile
endef

server: env ## Prefect server on 127.0.0.1:4200, database in .run/prefect.db (foreground)
	@mkdir -p $(RUN_DIR)
	$(SERVER_CMD)

worker: env ## process worker for the scorehouse pool of the server above (foreground)
	$(WORKER_CMD)

deploy: env ## create the work pool and register every deployment of prefect.yaml on the server
	env $(STACK_ENV) $(POOL_CMD)
	env $(STACK_ENV) $(DEPLOY_CMD)

reports-ui: env ## Evidently UI over the monitoring workspace on 127.0.0.1:8000 (foreground)
	@mkdir -p $(WORKSPACE)
	$(REPORTS_CMD)

up: env ## start server, deployments, worker, dashboard and reports UI in the background (logs in .run/logs/)
	$(call start,server,$(SERVER_CMD))
	$(call wait_for,server,http://$(HOST):$(PREFECT_PORT)/api/health)
	@$(MAKE) --no-print-directory deploy > $(RUN_DIR)/logs/deploy.log 2>&1 \
	  || { echo "deploy failed; the end of .run/logs/deploy.log:"; tail -n 20 $(RUN_DIR)/logs/deploy.log; exit 1; }
	@echo "deploy: work pool $(POOL) and the deployments of prefect.yaml registered (log .run/logs/deploy.log)"
	$(call start,worker,$(WORKER_CMD))
	$(call start,dashboard,env PREFECT_UI_URL=http://$(HOST):$(PREFECT_PORT) $(DASHBOARD_CMD))
	@mkdir -p $(WORKSPACE)
	$(call start,reports-ui,$(REPORTS_CMD))
	$(call wait_for,dashboard,http://$(HOST):$(DASHBOARD_PORT)/_stcore/health)
	$(call wait_for,reports-ui,http://$(HOST):$(REPORTS_PORT)/api/version)
	@echo ""
	@echo "  Prefect UI   http://$(HOST):$(PREFECT_PORT)   (runs, logs, artifacts; Deployments > scoring_cycle > Run)"
	@echo "  dashboard    http://$(HOST):$(DASHBOARD_PORT)"
	@echo "  reports      http://$(HOST):$(REPORTS_PORT)   (Evidently UI)"
	@echo "  stop with    make down"

dashboard: env ## the read-only dashboard on http://127.0.0.1:8501 (foreground; Ctrl-C stops it)
	$(DASHBOARD_CMD)

bench: env ## benchmark against the bare libraries and a peer pipeline at 1M rows (10M for memory); ~19 min idle, longer loaded
	$(RUN) python -m bench.run --rows 1000000 --big-rows 10000000

bench-dask: env ## the score flow on a 2-worker Dask LocalCluster vs the local engine, and the bare Dask chain, 1M rows
	$(RUN) python -m bench.dask_bench --rows 1000000

bench-soak: env ## a cycle and the dashboard after 100 days of the 15-minute schedule vs an empty warehouse; ~25 min
	$(RUN) python -m bench.soak --days 100

bench-quick: env ## the same benchmark at 200k rows (1M for memory); a few minutes
	$(RUN) python -m bench.run --rows 200000 --big-rows 1000000

calibrate: env ## error rates of promotion, alerts and CBPE by simulation (200 trials), and the cost of a 1M-row window; ~20 min
	$(RUN) python -m bench.calibrate --trials 200
	$(RUN) python -m bench.monitor_cost --rows 1000000 --labels 200000

down: ## stop what `make up` started, each by the PID in .run/<name>.pid
	$(call stop,reports-ui)
	$(call stop,dashboard)
	$(call stop,worker)
	$(call stop,server)

clean: ## remove the environment and every run-time output
	rm -rf .venv .prefect .run tests/output
	find data/warehouse data/incoming data/feedback data/processed data/rejected artifacts/models artifacts/reports \
	  -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
