# The pipelines' Airflow image: the official Airflow image plus this repository's runtime lock and
# production code (dags/, plugins/, include/). docker-compose.yaml builds it for every Airflow service.
#
#   docker build -t airflow-pipelines:latest .                       # the production image (last stage)
#   docker build --target sandbox -t airflow-pipelines-sandbox .    # + simulators and their tooling
#
# The Airflow version here must equal the `apache-airflow==` pin in requirements.txt (a unit test
# checks it), so the image and the lock never disagree about which Airflow they run.
FROM apache/airflow:3.3.2-python3.11 AS runtime

# mysqlclient (pulled in by the MySQL provider) compiles against these when no wheel matches.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libmariadb-dev gcc \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
USER airflow

# Dependencies first, on their own layer: editing code does not reinstall them. Only the runtime lock:
# test tools, simulators and linters (requirements-dev.txt) never reach the production image.
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt

# The repository root is /opt/airflow: DAGs, the plugin and the importable `include` package.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 scripts/ /opt/airflow/scripts/
COPY --chown=airflow:0 airflow_settings.yaml /opt/airflow/airflow_settings.yaml

# `include` is imported as a top-level package by DAGs, tasks and the plugin alike; the embedded
# SQLite/DuckDB files live in PIPELINES_DATA_DIR (a shared volume in docker-compose.yaml).
ENV PYTHONPATH=/opt/airflow \
    PIPELINES_DATA_DIR=/opt/airflow/data
RUN mkdir -p /opt/airflow/data && chmod 775 /opt/airflow/data

WORKDIR /opt/airflow

# The sandbox: the S3 server and the third-party API simulators of docker-compose's `sandbox` profile,
# with the tooling they need (the dev lock, which pins every runtime package at the same version).
FROM runtime AS sandbox
COPY --chown=airflow:0 requirements-dev.txt /opt/airflow/requirements-dev.txt
RUN pip install --no-cache-dir -r /opt/airflow/requirements-dev.txt
COPY --chown=airflow:0 sandbox/ /opt/airflow/sandbox/

# The production image (what `docker build .` gives): the runtime stage, nothing of the sandbox.
FROM runtime
