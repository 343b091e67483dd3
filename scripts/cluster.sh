#!/usr/bin/env bash
# `make cluster`: the docker-compose stack's Airflow (CeleryExecutor) as processes on this machine.
#
#   scripts/cluster.sh [start]      start everything, wait until it is up, stay in the foreground;
#                                   Ctrl-C (or SIGTERM) stops every process it started
#   scripts/cluster.sh stop         stop a cluster started from another shell (same CLUSTER_HOME)
#   scripts/cluster.sh airflow ARGS  the Airflow CLI with the cluster's settings (e.g. `backfill create`)
#   scripts/cluster.sh restart NAME stop one process (api-server, scheduler, dag-processor, triggerer,
#                                   worker1, worker2, ...) and start it again with the same settings
#
# api-server, scheduler, dag-processor, triggerer and CLUSTER_WORKERS Celery workers run as separate
# process groups; the metadata database is CLUSTER_DB on the local PostgreSQL server (created when
# missing), Redis is the Celery broker and result backend. The Airflow settings are the docker-compose
# file's AIRFLOW__* variables (tests/unit/test_docker_compose.py checks that both set the same ones),
# with the hosts of this machine; connections, variables and pools are airflow_settings.yaml's, as for
# `make airflow`. Logs: $CLUSTER_HOME/logs/<process>.log, task logs under $CLUSTER_HOME/logs/tasks.
# A start that fails, or is interrupted, stops whatever it had started.
#
# Settings (environment):
#   CLUSTER_HOME        AIRFLOW_HOME of the cluster                     default: .airflow/cluster
#   CLUSTER_PORT        api-server port (UI, REST API, execution API)   default: 8080
#   CLUSTER_WORKERS     number of Celery workers                        default: 2
#   CLUSTER_CONCURRENCY task slots of each worker                       default: 4
#   CLUSTER_DB          metadata database on the PostgreSQL server      default: airflow_cluster
#   CLUSTER_POSTGRES    PostgreSQL server URL (no database)             default: postgresql://postgres@127.0.0.1:5432
#   CLUSTER_REDIS       Redis URL, broker (the result backend uses the next database number)
#                                                                       default: redis://127.0.0.1:6379/0
#   CLUSTER_QUEUE       Celery queue of the tasks and the workers       default: default
#   CLUSTER_LOG_PORT    first log-server port: workers take CLUSTER_LOG_PORT + i - 1, the triggerer
#                       CLUSTER_LOG_PORT + CLUSTER_WORKERS              default: 8793
#   CLUSTER_HEALTH_PORT scheduler health check port                     default: 8974
#   CLUSTER_START_TIMEOUT seconds to wait for every process             default: 300
#   _AIRFLOW_WWW_USER_USERNAME / _AIRFLOW_WWW_USER_PASSWORD   the admin  default: airflow / airflow
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)

CLUSTER_HOME=${CLUSTER_HOME:-$REPO_ROOT/.airflow/cluster}
CLUSTER_PORT=${CLUSTER_PORT:-8080}
CLUSTER_WORKERS=${CLUSTER_WORKERS:-2}
CLUSTER_CONCURRENCY=${CLUSTER_CONCURRENCY:-4}
CLUSTER_DB=${CLUSTER_DB:-airflow_cluster}
CLUSTER_POSTGRES=${CLUSTER_POSTGRES:-postgresql://postgres@127.0.0.1:5432}
CLUSTER_REDIS=${CLUSTER_REDIS:-redis://127.0.0.1:6379/0}
CLUSTER_QUEUE=${CLUSTER_QUEUE:-default}
CLUSTER_LOG_PORT=${CLUSTER_LOG_PORT:-8793}
CLUSTER_HEALTH_PORT=${CLUSTER_HEALTH_PORT:-8974}
CLUSTER_START_TIMEOUT=${CLUSTER_START_TIMEOUT:-300}
LOGS="$CLUSTER_HOME/logs"
RUN="$CLUSTER_HOME/run"
[[ "$CLUSTER_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "cluster: CLUSTER_DB must be a plain name" >&2; exit 2; }

# --------------------------------------------------------------------------------------- settings
# The docker-compose file's x-airflow-common environment, with this machine's hosts.
cluster_env() {
  export AIRFLOW_HOME="$CLUSTER_HOME"
  export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
  export AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${CLUSTER_POSTGRES/postgresql:/postgresql+psycopg2:}/$CLUSTER_DB"
  export AIRFLOW__CELERY__BROKER_URL="$CLUSTER_REDIS"
  export AIRFLOW__CELERY__RESULT_BACKEND="${CLUSTER_REDIS%/*}/$(( ${CLUSTER_REDIS##*/} + 1 ))"
  export AIRFLOW__CORE__FERNET_KEY=${AIRFLOW_FERNET_KEY:-}
  export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP='(airflow|include)\..*'
  export AIRFLOW__API__BASE_URL="http://localhost:$CLUSTER_PORT"
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$CLUSTER_PORT/execution/"
  export AIRFLOW__API_AUTH__JWT_SECRET="$JWT_SECRET"
  export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=True
  # Only here: several processes of one kind share this machine.
  export AIRFLOW__API__SECRET_KEY="$API_SECRET_KEY"
  export AIRFLOW__API__PORT="$CLUSTER_PORT"
  export AIRFLOW__OPERATORS__DEFAULT_QUEUE="$CLUSTER_QUEUE"
  export AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT="$CLUSTER_HEALTH_PORT"
  export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=$(( CLUSTER_LOG_PORT + CLUSTER_WORKERS ))
  export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$LOGS/tasks"
  export AIRFLOW__LOGGING__LOGGING_LEVEL=${CLUSTER_LOGGING_LEVEL:-INFO}
  export AIRFLOW__CORE__HOSTNAME_CALLABLE=include.common.hostname.worker_hostname
}

# Secrets shared by every process of the cluster, made once per CLUSTER_HOME and kept there.
load_secrets() {
  mkdir -p "$CLUSTER_HOME" "$LOGS" "$RUN"
  if [ ! -f "$CLUSTER_HOME/secrets.env" ]; then
    (umask 077 && cat > "$CLUSTER_HOME/secrets.env" <<EOF
JWT_SECRET=${AIRFLOW_JWT_SECRET:-$(python -c 'import secrets; print(secrets.token_urlsafe(48))')}
API_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
EOF
    )
  fi
  # shellcheck disable=SC1091
  source "$CLUSTER_HOME/secrets.env"
}

# --------------------------------------------------------------------------------------- processes
command_of() {
  case "$1" in
    api-server) echo "airflow api-server --host 0.0.0.0 --port $CLUSTER_PORT --workers 1" ;;
    scheduler) echo "airflow scheduler" ;;
    dag-processor) echo "airflow dag-processor" ;;
    triggerer) echo "airflow triggerer" ;;
    worker[0-9]*)
      local i=${1#worker}
      echo "env PIPELINES_WORKER_NAME=$1 AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$(( CLUSTER_LOG_PORT + i - 1 ))" \
        "airflow celery worker --celery-hostname $1.$CLUSTER_DB@%h --queues $CLUSTER_QUEUE" \
        "--concurrency $CLUSTER_CONCURRENCY"
      ;;
    *) echo "cluster: no process named $1" >&2; return 2 ;;
  esac
}

process_names() {
  echo api-server scheduler dag-processor triggerer
  for i in $(seq 1 "$CLUSTER_WORKERS"); do echo "worker$i"; done
}

# Each process leads a process group of its own (setsid), so stopping it stops what it forked.
start_process() {
  local name=$1 cmd
  cmd=$(command_of "$name")
  # shellcheck disable=SC2086
  setsid $cmd >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  echo "cluster: started $name (pid $!, log $LOGS/$name.log)"
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

stop_process() {
  local name=$1 pid
  [ -f "$RUN/$name.pid" ] || return 0
  pid=$(cat "$RUN/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

stop_all() {
  local name
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    name=$(basename "$pidfile" .pid)
    stop_process "$name" &
  done
  wait
  rm -f "$RUN/ready"
  echo "cluster: stopped"
}

# --------------------------------------------------------------------------------------- start-up
prepare_database() {
  local server="$CLUSTER_POSTGRES/postgres"
  if [ -z "$(psql "$server" -tAc "SELECT 1 FROM pg_database WHERE datname = '$CLUSTER_DB'")" ]; then
    psql "$server" -qc "CREATE DATABASE $CLUSTER_DB" >/dev/null
    echo "cluster: created database $CLUSTER_DB"
  fi
  echo "cluster: migrating $CLUSTER_DB, creating the admin, applying airflow_settings.yaml"
  # One interpreter for the Airflow CLI commands (each on its own starts Airflow anew); the password
  # travels on stdin, not on a command line.
  python - >>"$LOGS/init.log" 2>&1 <<'PY'
import os, sys
from airflow.__main__ import main
user, password = os.environ.get("_AIRFLOW_WWW_USER_USERNAME") or "airflow", os.environ.get("_AIRFLOW_WWW_USER_PASSWORD") or "airflow"
for argv in (["db", "migrate"], ["fab-db", "migrate"], ["users", "create", "--username", user, f"--password={password}",
             "--firstname", "Airflow", "--lastname", "Admin", "--email", "airflowadmin@example.com", "--role", "Admin"]):
    sys.argv = ["airflow", *argv]
    main()
PY
  python -m include.common.settings apply "$REPO_ROOT/airflow_settings.yaml" >>"$LOGS/init.log" 2>&1
}

components_healthy() {
  python - "http://127.0.0.1:$CLUSTER_PORT/api/v2/monitor/health" <<'PY' 2>/dev/null
import json, sys, urllib.request
health = json.load(urllib.request.urlopen(sys.argv[1], timeout=3))
sys.exit(0 if all(health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")) else 1)
PY
}

wait_until_up() {
  local deadline=$(( SECONDS + CLUSTER_START_TIMEOUT )) name ready
  while (( SECONDS < deadline )); do
    for name in $(process_names); do
      alive "$name" || { echo "cluster: $name exited during start-up:" >&2; tail -n 30 "$LOGS/$name.log" >&2; return 1; }
    done
    ready=1
    for i in $(seq 1 "$CLUSTER_WORKERS"); do
      grep -q "ready\. \[celery.apps.worker\]" "$LOGS/worker$i.log" 2>/dev/null || ready=0
    done
    if (( ready )) && components_healthy; then return 0; fi
    sleep 1
  done
  echo "cluster: not up after $CLUSTER_START_TIMEOUT s (logs: $LOGS)" >&2
  return 1
}

start() {
  load_secrets
  cluster_env
  if ls "$RUN"/*.pid >/dev/null 2>&1; then
    for name in $(process_names); do
      if alive "$name"; then echo "cluster: already running in $CLUSTER_HOME ($name); 'make cluster-stop' first" >&2; exit 1; fi
    done
    rm -f "$RUN"/*.pid
  fi
  trap 'trap - EXIT; stop_all; exit 130' INT TERM
  trap 'stop_all' EXIT
  prepare_database
  for name in $(process_names); do start_process "$name"; done
  wait_until_up
  touch "$RUN/ready"
  cat <<MSG
cluster: up ($CLUSTER_WORKERS Celery workers, metadata database $CLUSTER_DB, broker $CLUSTER_REDIS)
  UI:       http://localhost:$CLUSTER_PORT  (user "${_AIRFLOW_WWW_USER_USERNAME:-airflow}", password "${_AIRFLOW_WWW_USER_PASSWORD:-airflow}" unless set)
  REST API: http://localhost:$CLUSTER_PORT/api/v2  (token: POST http://localhost:$CLUSTER_PORT/auth/token)
  logs:     $LOGS
Ctrl-C stops the cluster (or 'make cluster-stop' from another shell).
MSG
  # Stay in the foreground; say when a process ends (a drill, a crash) and keep the others running.
  declare -A reported=()
  while :; do
    if ! ls "$RUN"/*.pid >/dev/null 2>&1; then
      trap - EXIT
      echo "cluster: stopped from another shell"
      exit 0
    fi
    for name in $(process_names); do
      if [ -f "$RUN/$name.pid" ] && ! alive "$name" && [ -z "${reported[$name]:-}" ]; then
        echo "cluster: $name exited (log: $LOGS/$name.log)"
        reported[$name]=1
      elif alive "$name"; then
        unset "reported[$name]"
      fi
    done
    sleep 2 & wait $!
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop_all ;;
  restart)
    [ -n "${2:-}" ] || { echo "usage: $0 restart NAME" >&2; exit 2; }
    load_secrets
    cluster_env
    command_of "$2" >/dev/null
    stop_process "$2"
    start_process "$2"
    ;;
  airflow)
    shift
    load_secrets
    cluster_env
    exec airflow "$@"
    ;;
  *) echo "usage: $0 [start|stop|restart NAME|airflow ARGS]" >&2; exit 2 ;;
esac
