# Entry points. Every target sets itself up first (scripts/setup.sh is a no-op when .venv is current).
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: setup demo test lint format airflow cluster cluster-stop callio-sandbox aico-sandbox dwh-sandbox bench settings import-env lock clean chatbot-alembic chatbot-restore

setup:
	@bash scripts/setup.sh

demo: setup  ## run every pipeline end to end on the embedded defaults and print each summary
	@$(ENV) AIRFLOW_HOME=$(CURDIR)/.airflow/demo python -m sandbox.demo

test: setup lint  ## the whole test suite (needs MariaDB on :3306 and PostgreSQL on :5432)
	@$(ENV) pytest $(PYTEST_ARGS)

lint: setup
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: setup
	@.venv/bin/ruff format . && .venv/bin/ruff check --fix .

airflow: setup  ## airflow standalone with the embedded defaults; UNPAUSE=1 unpauses every DAG
	@$(ENV) AIRFLOW_HOME=$(CURDIR)/.airflow/standalone bash scripts/airflow.sh

callio-sandbox: setup  ## serve the Callio simulator on :18765 (the default callio_api) for `make airflow`
	@$(ENV) python -m sandbox.simulators.callio --port 18765 --tenants 3 --customers 2000 --calls 5000

aico-sandbox: setup  ## serve the AICO simulator on :18768 (the default aico_api) for `make airflow`
	@$(ENV) python -m sandbox.simulators.aico --port 18768

dwh-sandbox: setup  ## serve the S3, AppMetrica and Amplitude stand-ins of the default dwh_* connections
	@$(ENV) python -m sandbox.dwh_sandbox

bench: setup  ## benchmarks against the local MariaDB and PostgreSQL (not part of the tests)
	@$(ENV) python -m bench.dialog_etl && python -m bench.product_etl && python -m bench.callio \
	    && python -m bench.dwh_helper && python -m bench.amplitude_export --events 200000 \
	    && python -m bench.chatbot

settings: setup  ## apply airflow_settings.yaml to the Airflow installation in $$AIRFLOW_HOME
	@$(ENV) python -m include.common.settings apply airflow_settings.yaml

import-env: setup  ## ENV_FILE=path/.env: convert a legacy .env into airflow_settings.local.yaml
	@$(ENV) python -m include.common.legacy_env "$(ENV_FILE)" --output airflow_settings.local.yaml

chatbot-alembic: setup  ## ARGS="upgrade head" (any alembic command) on the chatbot_postgres connection
	@$(ENV) python -m include.chatbot.alembic_cli $(ARGS)

chatbot-restore: setup  ## ARGS="--list" or "--latest --database NAME --duckdb FILE": restore a chatbot backup
	@$(ENV) python -m include.chatbot.restore $(ARGS)

lock:  ## re-resolve requirements.in (runtime) and requirements-dev.in (tooling) into their pinned locks
	@.venv/bin/uv pip compile requirements.in --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 --no-header -o requirements.txt
	@.venv/bin/uv pip compile requirements-dev.in --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 --no-header -o requirements-dev.txt

clean:
	rm -rf .airflow .data

cluster: setup  ## CeleryExecutor on this machine (scripts/cluster.sh: CLUSTER_PORT, CLUSTER_WORKERS, ...)
	@$(ENV) bash scripts/cluster.sh start

cluster-stop:  ## stop a `make cluster` started from another shell
	@$(ENV) bash scripts/cluster.sh stop
