"""Structure of docker-compose.yaml, the Dockerfile and .dockerignore.

These files are only exercised for real by ``docker compose up``, and a mistake in them (a service
without a healthcheck, a connection pointing at a host that does not exist, an image whose Airflow
differs from the lock) surfaces late and far from its cause. So the files are parsed and checked here,
without a Docker engine: the compose file as YAML (anchors and merge keys resolved, ``${VAR:-default}``
interpolated with the defaults), the Dockerfile as a list of instructions. The processes the compose
file starts from the repository's image (the S3 server and the API simulators) are then started here,
outside Docker, with their command lines as written, and used through the connections that point at
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
REQUIREMENTS = REPO_ROOT / "requirements.txt"
SETTINGS = REPO_ROOT / "airflow_settings.yaml"

AIRFLOW_HOME_IN_IMAGE = "/opt/airflow"

AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
]
AIRFLOW_INFRA_SERVICES = ["postgres", "redis"]
# The pipelines' own stores: (service, image prefix, container port); None: the repository's image.
DATA_SERVICES = {
    "mysql": ("mariadb:", 3306),
    "pipelines-postgres": ("postgres:", 5432),
    "s3": (None, 5000),
}
# The simulators of the `sandbox` profile: service -> (module, port).
SANDBOX_PROFILE = "sandbox"
SANDBOX_SERVICES = {
    "callio-sandbox": ("sandbox.simulators.callio", 18765),
    "appmetrica-sandbox": ("sandbox.simulators.appmetrica", 18766),
    "amplitude-sandbox": ("sandbox.simulators.amplitude", 18767),
    "aico-sandbox": ("sandbox.simulators.aico", 18768),
}
# Connection id -> (accepted types, service it must point at, database it must name).
PIPELINE_CONNECTIONS = {
    "dialog_src": ({"mysql"}, "mysql", "dialog"),
    "dialog_dst": ({"mysql"}, "mysql", "dialog"),
    "product_db": ({"mysql"}, "mysql", "belle_ai"),
    "chatbot_postgres": ({"postgres", "postgresql"}, "pipelines-postgres", "chatbot"),
    "dwh_db": ({"postgres", "postgresql"}, "pipelines-postgres", "dwh"),
    "dwh_s3": ({"aws"}, "s3", None),
    "chatbot_backups": ({"aws"}, "s3", None),
    "callio_warehouse": ({"duckdb"}, None, None),
    "callio_api": ({"http"}, "callio-sandbox", None),
    "appmetrica_api": ({"http"}, "appmetrica-sandbox", None),
    "amplitude_web": ({"http"}, "amplitude-sandbox", None),
    "amplitude_mobile": ({"http"}, "amplitude-sandbox", None),
    "aico_api": ({"http"}, "aico-sandbox", None),
}
# What each long-running service's healthcheck must probe (as in Airflow's official compose file).
EXPECTED_HEALTHCHECKS = {
    "airflow-apiserver": ["curl", "/api/v2/version"],
    "airflow-scheduler": ["curl", ":8974/health"],
    "airflow-dag-processor": ["airflow jobs check", "--job-type DagProcessorJob"],
    "airflow-triggerer": ["airflow jobs check", "--job-type TriggererJob"],
    "airflow-worker": ["celery", "inspect ping"],
    "postgres": ["pg_isready"],
    "redis": ["redis-cli", "ping"],
    "pipelines-postgres": ["pg_isready"],
}

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?[-?](?P<default>[^}]*))?\}")


def interpolate(value):
    """Resolve compose ``${VAR:-default}`` with an empty environment, recursively; ``$$`` becomes ``$``.

    This is what ``docker compose config`` shows on a machine with no ``.env``, i.e. the defaults a
    new user gets.
    """
    if isinstance(value, str):
        return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else (m.group("default") or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    """The compose file as written (anchors resolved, variables not)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    return interpolate(raw_compose)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def common_env(compose) -> dict:
    env = compose["x-airflow-common"]["environment"]
    assert isinstance(env, dict), "x-airflow-common.environment must be a mapping"
    return env


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends with a dangling line continuation"
    return instructions


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                assert sep, f"use the ENV KEY=value form, got {token!r}"
                env[key] = value
    return env


def dockerfile_copies() -> dict[str, str]:
    """Destination in the image -> source in the build context, for every COPY/ADD from the context."""
    copies: dict[str, str] = {}
    for keyword, args in dockerfile_instructions():
        if keyword in ("COPY", "ADD"):
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            *sources, dest = parts
            for src in sources:
                copies[dest.rstrip("/") or "/"] = src.rstrip("/")
    return copies


def service_volume_targets(service: dict) -> dict[str, str]:
    """Container path -> host source of a service's short-syntax volumes."""
    targets: dict[str, str] = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        targets[target.rstrip("/")] = source
    return targets


def is_long_running(name: str, service: dict) -> bool:
    """One-shot (airflow-init) and opt-in profile services (airflow-cli) need no healthcheck."""
    return name != "airflow-init" and not service.get("profiles")


def healthcheck_command(service: dict) -> str:
    test = service.get("healthcheck", {}).get("test")
    if isinstance(test, list):
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"healthcheck test must start CMD/CMD-SHELL: {test}"
        return " ".join(str(part) for part in test[1:])
    return test or ""


def parse_connection(value: str) -> dict:
    """An ``AIRFLOW_CONN_*`` value, JSON or URI form, as ``{conn_type, host, port, schema, extra, ...}``."""
    value = value.strip()
    if value.startswith("{"):
        conn = json.loads(value)
        extra = conn.get("extra") or {}
        conn["extra"] = json.loads(extra) if isinstance(extra, str) else extra
        return conn
    parts = urlsplit(value)
    return {
        "conn_type": parts.scheme.replace("-", "_"),
        "host": parts.hostname,
        "port": parts.port,
        "schema": parts.path.lstrip("/"),
        "login": parts.username,
        "password": parts.password,
        "extra": {},
    }


def databases_created_by(compose: dict, service_name: str) -> set[str]:
    """Databases a MariaDB/PostgreSQL service creates: its env default plus its init SQL."""
    service = compose["services"][service_name]
    env = service.get("environment", {})
    names = {env[key] for key in ("MARIADB_DATABASE", "MYSQL_DATABASE", "POSTGRES_DB") if env.get(key)}
    for ref in service.get("configs", []):
        source = ref["source"] if isinstance(ref, dict) else ref
        content = compose.get("configs", {}).get(source, {}).get("content", "")
        names |= set(re.findall(r"CREATE\s+DATABASE\s+(?:IF\s+NOT\s+EXISTS\s+)?[`\"]?(\w+)", content, re.I))
    return names


# ------------------------------------------------------------------------------------------ services


@pytest.mark.parametrize("name", AIRFLOW_SERVICES + AIRFLOW_INFRA_SERVICES)
def test_airflow_service_is_defined(services, name):
    """The compose file keeps every service of Airflow's official CeleryExecutor layout."""
    assert name in services, f"service {name!r} missing; have {sorted(services)}"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_run_the_image_built_from_this_repo(services, name):
    """An Airflow service on the stock image would lack requirements.txt and `include/`."""
    service = services[name]
    build = service.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    assert context in (".", "./"), f"{name}: build context is {context!r}, expected the repository root"
    assert service.get("image"), f"{name}: name the built image so all services share one build"
    assert not service["image"].startswith("apache/airflow"), f"{name}: runs the stock image"


def test_airflow_services_share_one_image(services):
    """The scheduler and the workers must run the very same code and dependencies."""
    images = {services[name]["image"] for name in AIRFLOW_SERVICES}
    assert len(images) == 1, images


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("airflow-apiserver", "api-server"),
        ("airflow-scheduler", "scheduler"),
        ("airflow-dag-processor", "dag-processor"),
        ("airflow-worker", "celery worker"),
        ("airflow-triggerer", "triggerer"),
    ],
)
def test_commands_match_the_official_layout(services, name, command):
    """Each Airflow component runs the command the official compose file gives it."""
    assert services[name]["command"] == command


@pytest.mark.parametrize("folder", ["dags", "plugins", "include"])
def test_code_folders_reach_the_containers(services, folder):
    """DAGs, the plugin and `include` must be in every Airflow container: mounted or baked in."""
    target = f"{AIRFLOW_HOME_IN_IMAGE}/{folder}"
    copied = dockerfile_copies().get(target) == folder
    for name in AIRFLOW_SERVICES:
        mounts = service_volume_targets(services[name])
        mounted = target in mounts and mounts[target].endswith(f"/{folder}")
        assert mounted or copied, f"{name}: {target} is neither mounted from ./{folder} nor copied"


def test_every_long_running_service_has_a_healthcheck(services):
    """`depends_on: service_healthy` and `docker compose ps` are only as good as these checks."""
    long_running = [name for name, svc in services.items() if is_long_running(name, svc)]
    assert set(AIRFLOW_SERVICES) - {"airflow-init"} <= set(long_running)
    missing = [name for name in long_running if not healthcheck_command(services[name]).strip()]
    assert not missing, f"services without a healthcheck test: {missing}"


@pytest.mark.parametrize("name", sorted(EXPECTED_HEALTHCHECKS))
def test_healthchecks_probe_the_right_thing(services, name):
    """A healthcheck must probe the component itself, as in the official file."""
    command = healthcheck_command(services[name])
    for fragment in EXPECTED_HEALTHCHECKS[name]:
        assert fragment in command, f"{name}: healthcheck {command!r} lacks {fragment!r}"


def test_per_host_healthchecks_escape_hostname(raw_compose):
    """`$${HOSTNAME}` must reach the container shell; a single `$` is expanded (empty) by compose."""
    for name in ("airflow-dag-processor", "airflow-triggerer", "airflow-worker"):
        test = raw_compose["services"][name]["healthcheck"]["test"]
        joined = " ".join(test) if isinstance(test, list) else test
        assert "$${HOSTNAME}" in joined, f"{name}: {joined!r}"


def test_depends_on_waits_for_health(services):
    """Dependencies wait for health (or, for airflow-init, completion) rather than mere start."""
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must use the long form with conditions"
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            condition = spec.get("condition")
            if target == "airflow-init":
                assert condition == "service_completed_successfully", f"{name} -> {target}: {condition}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}: {condition}"
                assert healthcheck_command(services[target]), f"{name} waits on {target}, which has none"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_wait_for_their_stores(services, name):
    """Airflow needs its metadata DB and broker, and the pipelines need their stores, before starting."""
    depends_on = services[name].get("depends_on", {})
    for target in AIRFLOW_INFRA_SERVICES + list(DATA_SERVICES):
        assert depends_on.get(target, {}).get("condition") == "service_healthy", f"{name} -> {target}"
    if name != "airflow-init":
        assert depends_on.get("airflow-init", {}).get("condition") == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(DATA_SERVICES))
def test_pipeline_data_services(services, name):
    """MariaDB, PostgreSQL and S3 for the pipelines run beside Airflow, each with a healthcheck."""
    image_prefix, _port = DATA_SERVICES[name]
    assert name in services, f"data service {name!r} missing"
    if image_prefix is None:
        assert_runs_the_sandbox_stage(services, name)
    else:
        assert services[name]["image"].startswith(image_prefix), services[name]["image"]
    assert healthcheck_command(services[name]), f"{name} has no healthcheck"


def test_mysql_healthcheck_waits_for_innodb(services):
    """A bare TCP check passes while MariaDB still initialises; the image's script knows better."""
    command = healthcheck_command(services["mysql"])
    assert ("healthcheck.sh" in command and "--innodb_initialized" in command) or "mysqladmin ping" in command


def test_pipeline_databases_are_created(compose):
    """Every database a connection names is created by its server on first start."""
    assert {"dialog", "belle_ai"} <= databases_created_by(compose, "mysql")
    assert {"chatbot", "dwh"} <= databases_created_by(compose, "pipelines-postgres")


def test_named_volumes_are_declared(compose):
    """A named volume used by a service but not declared at the top level is a compose error."""
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for spec in service.get("volumes", []):
            source = spec.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source!r} is not declared"


# ------------------------------------------------------------------------------ Airflow settings


def test_common_environment_matches_the_official_settings(common_env):
    """The settings the official Airflow 3 compose file relies on, plus this repository's choices."""
    assert common_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert common_env["AIRFLOW__CORE__AUTH_MANAGER"] == (
        "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    )
    assert common_env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"].lower() == "true"
    assert common_env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert common_env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"].lower() == "true"
    assert common_env["AIRFLOW__API__BASE_URL"].startswith("http")
    assert common_env["AIRFLOW__API_AUTH__JWT_SECRET"], "services must share a non-empty JWT secret"


def test_service_urls_point_at_defined_services(common_env, services):
    """Metadata DB, broker and execution API URLs must name services of this file."""
    for key in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    ):
        host = urlsplit(common_env[key]).hostname
        assert host in services, f"{key} points at {host!r}, not a service"
    assert urlsplit(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).path == "/execution/"
    assert urlsplit(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname == "airflow-apiserver"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_services_keep_the_common_environment(services, common_env, name):
    """A service that overrides `environment` must merge the common one, or it loses the connections."""
    env = services[name]["environment"]
    missing = sorted(key for key in common_env if key not in env)
    assert not missing, f"{name} lacks {missing}"


# ----------------------------------------------------------------------------------- connections


@pytest.mark.parametrize("conn_id", sorted(PIPELINE_CONNECTIONS))
def test_pipeline_connection_points_at_a_service(compose, services, common_env, conn_id):
    """Each connection the DAGs use is set in the common environment and reaches a store of this file."""
    key = f"AIRFLOW_CONN_{conn_id.upper()}"
    assert key in common_env, f"{key} is not in x-airflow-common.environment"
    conn = parse_connection(common_env[key])
    conn_types, service_name, database = PIPELINE_CONNECTIONS[conn_id]
    assert conn["conn_type"] in conn_types, f"{conn_id}: type {conn['conn_type']!r}"

    if conn["conn_type"] == "duckdb":
        # A DuckDB file must be on a volume every Airflow container shares, not in one container.
        path = conn["host"]
        mounts = service_volume_targets(compose["x-airflow-common"])
        assert any(path.startswith(target + "/") for target in mounts), f"{conn_id}: {path} not on a volume"
        return

    if conn["conn_type"] == "aws":
        endpoint = conn["extra"].get("endpoint_url")
        assert endpoint, f"{conn_id}: extra.endpoint_url must point at the local S3 service"
        host, port = urlsplit(endpoint).hostname, urlsplit(endpoint).port
        assert conn.get("login") and conn.get("password"), f"{conn_id}: boto3 needs (dummy) keys"
    elif conn["conn_type"] == "http":
        url = urlsplit(conn["host"])
        assert url.scheme == "http", (
            f"{conn_id}: {conn['host']!r} must say http:// (the simulators speak HTTP)"
        )
        host, port = url.hostname, url.port
        assert port == SANDBOX_SERVICES[service_name][1], f"{conn_id}: port {port}"
        assert host == service_name, f"{conn_id}: host {host!r}, expected service {service_name!r}"
        return
    else:
        host, port = conn["host"], conn.get("port")
        service_env = services[service_name].get("environment", {})
        user = service_env.get("MARIADB_USER") or service_env.get("POSTGRES_USER")
        assert conn.get("login") == user, f"{conn_id}: login {conn.get('login')!r}, server user {user!r}"
        assert conn.get("schema") == database, f"{conn_id}: database {conn.get('schema')!r}"
        assert database in databases_created_by(compose, service_name)

    assert host == service_name, f"{conn_id}: host {host!r}, expected service {service_name!r}"
    assert int(port) == DATA_SERVICES[service_name][1], f"{conn_id}: port {port}"


def test_connection_ids_are_unique_per_variable():
    """YAML silently keeps the last of two equal keys; a duplicated connection would hide a typo."""
    text = COMPOSE_FILE.read_text()
    keys = re.findall(r"^\s+(AIRFLOW_CONN_\w+):", text, re.M)
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert keys, "no AIRFLOW_CONN_* variables found"


# ------------------------------------------------------------------ the S3 server and the simulators


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{argv} lacks {name}"
    return argv[argv.index(name) + 1]


def active_services(services: dict, profiles: set[str]) -> set[str]:
    """The services `docker compose --profile ... up` starts: those without a profile, and those of an
    active one."""
    return {
        name for name, svc in services.items() if not svc.get("profiles") or set(svc["profiles"]) & profiles
    }


@pytest.mark.parametrize("profiles", [set(), {SANDBOX_PROFILE}, {SANDBOX_PROFILE, "debug"}], ids=str)
def test_each_profile_starts_a_complete_stack(services, profiles):
    """Compose refuses to start a service that depends on one outside the active profiles, so the
    Airflow services never wait on a simulator; `--profile sandbox` adds every simulator."""
    active = active_services(services, profiles)
    for name in active:
        outside = set(services[name].get("depends_on", {})) - active
        assert not outside, f"{name} depends on {outside}, not started with profiles {profiles or '{}'}"
    assert set(AIRFLOW_SERVICES) | set(AIRFLOW_INFRA_SERVICES) | set(DATA_SERVICES) <= active
    assert set(SANDBOX_SERVICES) & active == (set(SANDBOX_SERVICES) if SANDBOX_PROFILE in profiles else set())


def test_dwh_s3_names_the_bucket_the_s3_service_creates(services, common_env):
    """The S3 server creates the connection's bucket whenever it starts (a restart empties moto), and
    reports healthy only once that bucket answers."""
    conn = parse_connection(common_env["AIRFLOW_CONN_DWH_S3"])
    argv = services["s3"]["command"]
    assert argv[:3] == ["python", "-m", "sandbox.simulators.s3"]
    assert (option(argv, "--host"), int(option(argv, "--port"))) == ("0.0.0.0", DATA_SERVICES["s3"][1])
    bucket = option(argv, "--bucket")
    assert conn["extra"].get("bucket_name") == bucket, "dwh_s3 must name the bucket the S3 server creates"
    assert f"localhost:{DATA_SERVICES['s3'][1]}/{bucket}'" in healthcheck_command(services["s3"])


def assert_runs_the_sandbox_stage(services, name):
    """The simulators and the S3 server run from the Dockerfile's ``sandbox`` stage (the production image
    plus the tooling they need), under an image name of its own, with ``sandbox/`` mounted."""
    service = services[name]
    assert service["build"] == {"context": ".", "target": "sandbox"}, service.get("build")
    assert service["image"] != services["airflow-scheduler"]["image"]
    assert service["image"] == "airflow-pipelines-sandbox:latest"  # AIRFLOW_SANDBOX_IMAGE_NAME unset
    assert any(volume.endswith("/sandbox:/opt/airflow/sandbox:ro") for volume in service["volumes"])


@pytest.mark.parametrize("name", sorted(SANDBOX_SERVICES))
def test_sandbox_services_run_the_simulators(services, name):
    """Each simulator runs from the repository's sandbox image under the `sandbox` profile, listens on
    all interfaces (other containers call it) and has a healthcheck on its own port."""
    module, port = SANDBOX_SERVICES[name]
    service = services[name]
    assert service.get("profiles") == [SANDBOX_PROFILE]
    assert_runs_the_sandbox_stage(services, name)
    assert service["entrypoint"] == ["/usr/bin/dumb-init", "--"]  # signals reach python, zombies are reaped
    argv = service["command"]
    assert argv[:3] == ["python", "-m", module]
    assert (option(argv, "--host"), int(option(argv, "--port"))) == ("0.0.0.0", port)
    assert f"'localhost', {port}," in healthcheck_command(service)
    assert service.get("restart") == "always"


def test_sandbox_connections_are_the_embedded_defaults_but_for_the_host(common_env):
    """The stack's simulators hand out the synthetic accounts and keys of airflow_settings.yaml: the
    compose connections differ from those only in the host they point at."""
    defaults = {c["conn_id"]: c for c in yaml.safe_load(SETTINGS.read_text())["airflow"]["connections"]}
    for conn_id in ("callio_api", "appmetrica_api", "amplitude_web", "amplitude_mobile"):
        conn, default = parse_connection(common_env[f"AIRFLOW_CONN_{conn_id.upper()}"]), defaults[conn_id]
        assert (conn["conn_type"], conn.get("login"), conn.get("password"), conn["extra"]) == (
            default["conn_type"],
            default.get("conn_login"),
            default.get("conn_password"),
            default.get("conn_extra") or {},
        ), conn_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def run_service(service: dict, port: int, log: Path) -> Generator[None]:
    """Run a service's command line outside Docker, ``--port`` changed to ``port`` (the container ports
    may be taken here), until its own healthcheck passes; then stop it with SIGTERM, as `docker stop`
    does, and expect a clean exit."""
    argv, container_port = list(service["command"]), option(service["command"], "--port")
    assert argv[0] == "python"
    argv[0], argv[argv.index("--port") + 1] = sys.executable, str(port)
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    probe = [sys.executable, "-c", test[3].replace(container_port, str(port))]
    with log.open("w") as output:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):  # the simulators build their data first: a few seconds at most
            assert process.poll() is None, f"{argv} exited: {log.read_text()[-2000:]}"
            if subprocess.run(probe, capture_output=True, timeout=30).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"{argv} never passed its healthcheck: {log.read_text()[-2000:]}")
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()[-2000:]


def use_connection(monkeypatch, common_env: dict, conn_id: str, **changes) -> None:
    """Expose the compose file's connection ``conn_id`` to this process, with ``changes`` applied."""
    conn = json.loads(common_env[f"AIRFLOW_CONN_{conn_id.upper()}"])
    for key, value in changes.items():
        if key == "endpoint_url":
            conn["extra"][key] = value
        else:
            conn[key] = value
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_the_s3_service_serves_the_bucket_of_dwh_s3(services, common_env, monkeypatch, tmp_path):
    """The s3 service's command, started as written, serves the dwh_s3 connection's bucket: the
    plugin's store opens it from the connection and writes, lists and reads an object."""
    from include.dwh.s3 import S3Store

    port = free_port()
    with run_service(services["s3"], port, tmp_path / "s3.log"):
        use_connection(monkeypatch, common_env, "dwh_s3", endpoint_url=f"http://127.0.0.1:{port}")
        store = S3Store.from_connection("dwh_s3")
        assert store.bucket == "dwh"
        assert store.upload("reports/hello.txt", io.BytesIO(b"hello"))["size"] == 5
        assert [o["Key"] for o in store.list_objects("reports/")["objects"]] == ["reports/hello.txt"]


def test_the_sandbox_services_answer_the_connections_pointing_at_them(
    services, common_env, monkeypatch, tmp_path
):
    """Each simulator's command, started as written, accepts the credentials of the connections that
    point at it, used through the pipelines' own clients: every Callio tenant logs in, the AppMetrica
    token pings, both Amplitude projects export a day."""
    from include.callio.client import CallioClient
    from include.callio.config import load_config
    from include.dwh.amplitude import export_week, load_credentials
    from include.dwh.appmetrica import load_settings, ping

    ports = {name: free_port() for name in SANDBOX_SERVICES}
    with contextlib.ExitStack() as running:
        for name in SANDBOX_SERVICES:
            running.enter_context(run_service(services[name], ports[name], tmp_path / f"{name}.log"))
        for conn_id, (_, service_name, _) in PIPELINE_CONNECTIONS.items():
            if service_name in SANDBOX_SERVICES:
                use_connection(
                    monkeypatch, common_env, conn_id, host=f"http://127.0.0.1:{ports[service_name]}"
                )

        config = load_config("callio_api")
        assert len(config.accounts) == 3
        for account in config.accounts:
            with CallioClient(account, config.api) as client:
                client.login()

        status = asyncio.run(ping(load_settings("appmetrica_api")))
        assert status["available"] is True

        day = dt.date.today() - dt.timedelta(days=3)
        for source in ("web", "mobile"):
            export = export_week(day, day, source, load_credentials(source), tmp_path / source)
            assert (export.events, export.parts) == (24 * 20, 24 * 2), source


# -------------------------------------------------------------------------------------- airflow-init


def test_airflow_init_migrates_creates_admin_and_applies_settings(raw_compose):
    """One `airflow-init` run leaves a usable cluster: schema, an admin login, the repo's settings."""
    init = raw_compose["services"]["airflow-init"]
    command = init["command"]
    script = command if isinstance(command, str) else "\n".join(command)
    steps = [
        "airflow db migrate",
        "airflow users create",
        "python -m include.common.settings apply /opt/airflow/airflow_settings.yaml",
    ]
    positions = [script.find(step) for step in steps]
    assert all(pos >= 0 for pos in positions), dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions), "migrate, then create the admin, then apply the settings"
    assert "--role Admin" in script
    assert "$${_AIRFLOW_WWW_USER_USERNAME}" in script and "$${_AIRFLOW_WWW_USER_PASSWORD}" in script
    env = interpolate(init["environment"])
    assert env["_AIRFLOW_WWW_USER_USERNAME"] == "airflow"
    assert env["_AIRFLOW_WWW_USER_PASSWORD"] == "airflow"


# ---------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_airflow_version_matches_the_lock():
    """The image's Airflow and the lock's `apache-airflow==` pin must be the same release."""
    froms = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert froms, "Dockerfile has no FROM"
    match = re.fullmatch(
        r"apache/airflow:(\d+\.\d+\.\d+)(?:-python(\d+\.\d+))?(?:\s+AS\s+\w+)?", froms[0], re.I
    )
    assert match, f"base image must be apache/airflow:<version>[-pythonX.Y], got {froms[0]!r}"
    image_version, python_version = match.groups()
    assert image_version.startswith("3.3."), image_version
    pin = re.search(r"^apache-airflow==(\S+)\s*$", REQUIREMENTS.read_text(), re.M)
    assert pin, "requirements.txt has no apache-airflow== pin"
    assert image_version == pin.group(1), f"image {image_version} vs requirements.txt {pin.group(1)}"
    if python_version:
        assert python_version == "3.11", python_version


def test_dockerfile_installs_the_locked_requirements():
    """The lock is copied on its own before the code (layer caching) and installed with pip or uv."""
    instructions = dockerfile_instructions()
    copy_req = next(
        (
            i
            for i, (kw, args) in enumerate(instructions)
            if kw in ("COPY", "ADD") and "requirements.txt" in args
        ),
        None,
    )
    install = next(
        (
            i
            for i, (kw, args) in enumerate(instructions)
            if kw == "RUN" and re.search(r"\b(pip|uv pip) install\b.*-r\s+\S*requirements\.txt", args)
        ),
        None,
    )
    assert copy_req is not None, "requirements.txt is not copied into the image"
    assert install is not None, "no RUN pip/uv install -r requirements.txt"
    assert copy_req < install
    code_copies = [
        i
        for i, (kw, args) in enumerate(instructions)
        if kw == "COPY" and re.search(r"\b(include|dags)/?\s", args)
    ]
    assert code_copies and min(code_copies) > install, "copy the code after installing dependencies"


def test_dockerfile_builds_mysqlclient_prerequisites():
    """mysqlclient compiles from source when no wheel fits; it needs these Debian packages."""
    runs = " ".join(args for kw, args in dockerfile_instructions() if kw == "RUN")
    for package in ("pkg-config", "libmariadb-dev", "gcc"):
        assert re.search(rf"apt-get install\b.*\b{re.escape(package)}\b", runs), package


def test_dockerfile_makes_include_importable():
    """`import include...` works in every process only if the repository root is on PYTHONPATH."""
    env = dockerfile_env()
    assert AIRFLOW_HOME_IN_IMAGE in env.get("PYTHONPATH", "").split(":"), env.get("PYTHONPATH")
    assert env.get("PIPELINES_DATA_DIR") == f"{AIRFLOW_HOME_IN_IMAGE}/data"
    copies = dockerfile_copies()
    for folder in ("dags", "plugins", "include", "scripts"):
        assert copies.get(f"{AIRFLOW_HOME_IN_IMAGE}/{folder}") == folder, f"{folder}/ is not copied"
    assert copies.get(f"{AIRFLOW_HOME_IN_IMAGE}/airflow_settings.yaml") == "airflow_settings.yaml"


def test_dockerfile_runs_as_the_airflow_user():
    """System packages need root, but the image must end as `airflow`, as the official image does."""
    users = [args for kw, args in dockerfile_instructions() if kw == "USER"]
    assert users and users[-1] == "airflow", users


def test_dockerignore_keeps_local_state_out_of_the_build():
    """Local venvs, Airflow homes and data would bloat the context and could leak into the image."""
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for required in (".venv", ".airflow", ".data", ".git", "logs"):
        assert required in patterns, f".dockerignore misses {required}"
    assert any("__pycache__" in p for p in patterns)


# ---------------------------------------------------------------------- `make cluster` (scripts/cluster.sh)

CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "cluster.sh"
#: Settings whose value is the same in both: only the hosts, ports and secrets differ.
SAME_VALUE = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__AUTH_MANAGER",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK",
)


def cluster_settings() -> dict[str, str]:
    """The ``export AIRFLOW__...=value`` lines of cluster.sh's ``cluster_env``, values unquoted."""
    body = re.search(r"^cluster_env\(\) \{\n(.*?)^\}", CLUSTER_SCRIPT.read_text(), re.M | re.S)
    assert body, "scripts/cluster.sh has no cluster_env() function"
    settings = {}
    for name, value in re.findall(r"^\s*export (AIRFLOW__\w+)=(.*)$", body.group(1), re.M):
        settings[name] = shlex.split(value)[0] if value.strip() else ""
    return settings


def test_cluster_sets_every_airflow_setting_of_the_compose_file(common_env):
    """The compose file is the template of `make cluster`: each AIRFLOW__* of one is set by the other."""
    compose_names = {name for name in common_env if name.startswith("AIRFLOW__")}
    missing = compose_names - set(cluster_settings())
    assert not missing, f"scripts/cluster.sh does not set {sorted(missing)}"


def test_cluster_settings_agree_with_the_compose_file(common_env):
    cluster = cluster_settings()
    for name in SAME_VALUE:
        assert cluster[name].lower() == str(common_env[name]).lower(), name
    assert cluster["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"].lower().endswith("true}")
    assert cluster["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith("/execution/")
    assert cluster["AIRFLOW__CELERY__BROKER_URL"].startswith("$") and "redis" in str(
        common_env["AIRFLOW__CELERY__BROKER_URL"]
    )
