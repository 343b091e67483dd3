#!/usr/bin/env bash
# `make airflow`: airflow standalone on the embedded defaults (sourced env from scripts/env.sh).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "${UNPAUSE:-0}" = "1" ]; then
  export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
fi
airflow db migrate >/dev/null
python -m include.common.settings apply "$REPO_ROOT/airflow_settings.yaml"
[ "${UNPAUSE:-0}" = "1" ] && for dag in $(cd "$REPO_ROOT/dags" && ls *.py | sed 's/\.py$//'); do
  airflow dags unpause "$dag" >/dev/null 2>&1 || true   # DAGs already known keep their old state otherwise
done
cat <<MSG
Airflow UI: http://localhost:8080  (user "admin"; the password is printed below once standalone is up,
and kept in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)
REST API:   http://localhost:8080/api/v2  (token: POST http://localhost:8080/auth/token)
MSG
exec airflow standalone
