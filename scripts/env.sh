# Sourced by the Makefile targets: one set of Airflow settings for the demo, the tests and `make airflow`.
# AIRFLOW_HOME is chosen by the caller (each purpose keeps its own metadata database).
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$REPO_ROOT/.venv/bin:$PATH"
# The repository root and the plugins folder, as Airflow adds it to sys.path.
export PYTHONPATH="$REPO_ROOT:$REPO_ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}
export AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP='(airflow|include)\..*'
export AIRFLOW__LOGGING__LOGGING_LEVEL=${AIRFLOW__LOGGING__LOGGING_LEVEL:-WARNING}
export PIPELINES_DATA_DIR=${PIPELINES_DATA_DIR:-$REPO_ROOT/.data}
