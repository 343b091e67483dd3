"""The OpenAPI document against the code: schemathesis generates requests for every operation from the
document (valid ones and invalid ones) and checks each answer.

The plugin is served as the API server serves it (see ``conftest.py``), with everything real behind
it: a SQLite DWH, the local S3 store (moto's server) and the AppMetrica and Amplitude simulators over
HTTP, and a validator that takes any token as an editor (authentication has its own tests). The checks:

* no 5xx, except 502 / 503 / 504 where the operation documents them (an upstream failing, missing or
  slow, which the simulators can be for generated input);
* every status the operation answers is documented, and its body matches the documented schema.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from dwh_helper.app import api
from dwh_helper.openapi import openapi_document
from dwh_helper.services import AppMetricaAccess, Services, Settings
from include.common.db import sqlite_engine
from include.dwh.amplitude import AmplitudeCredentials
from include.dwh.appmetrica import AppMetricaSettings
from include.dwh.s3 import S3Store
from include.dwh.schema import events_part, writable_columns
from sandbox.http import serve_asgi
from sandbox.simulators.amplitude import AmplitudeSimulator
from sandbox.simulators.appmetrica import AppMetricaSimulator
from sandbox.simulators.s3 import create_bucket, s3_client, serve_s3
from tests.plugins.conftest import MOUNT, PluginServer, airflow_plugin_host

#: Generated examples per operation (the coverage phase adds its boundary cases): about 10 s in all.
MAX_EXAMPLES = 40
#: What an upstream (S3, AppMetrica, Amplitude) can make an operation answer; only where documented.
UPSTREAM_STATUSES = frozenset({502, 503, 504})
#: A line break in a path parameter, as schemathesis sends it (percent-encoded) or not.
LINE_BREAK = re.compile(r"[\r\n]|%0[ad]", re.IGNORECASE)

CONFIG = SchemathesisConfig.from_dict(
    {
        "headers": {"Authorization": "Bearer fuzz"},
        "generation": {"mode": "all"},  # valid requests and invalid ones
        "phases": {"stateful": {"enabled": False}},
    }
)


@pytest.fixture(scope="module")
def plugin(host_workdir, tmp_path_factory) -> Iterator[PluginServer]:
    """The DWH helper with every service it can have, reached through real sockets."""
    workdir = tmp_path_factory.mktemp("fuzz")
    appmetrica = AppMetricaSimulator(ready_after_polls=0, rows_per_day=4)
    amplitude = AmplitudeSimulator(
        events_per_hour=1,
        data_since=dt.datetime(2024, 2, 1),
        data_until=dt.datetime(2024, 2, 2, 23),
        workdir=workdir / "amplitude-sim",
    )
    with serve_s3() as s3_endpoint, appmetrica.serve() as appmetrica_url, amplitude.serve() as amplitude_url:
        create_bucket(s3_endpoint, "fuzz", versioned=True)
        store = S3Store(s3_client(s3_endpoint), "fuzz")
        access = AppMetricaAccess(
            AppMetricaSettings(
                token=appmetrica.token, base_url=appmetrica_url, application_id=appmetrica.application_id
            ),
            lambda: {"daily": {"resource": "events", "fields": ["event_name"], "period": "yesterday"}},
        )
        projects = amplitude.projects
        engine = sqlite_engine(str(workdir / "dwh.sqlite"))
        asgi_app, flask_app = airflow_plugin_host(
            Services(
                dwh_engine=engine,
                s3=lambda _conn_id: store,
                appmetrica=lambda _conn_id: access,
                amplitude=lambda conn_id: _credentials(projects, conn_id, amplitude_url),
            ),
            amplitude_workdir=host_workdir,
        )
        with serve_asgi(asgi_app) as server:
            yield PluginServer(server, flask_app)
        engine.dispose()


def _credentials(projects: dict[str, Any], conn_id: str, base_url: str) -> AmplitudeCredentials:
    project = projects[conn_id.removeprefix("amplitude_")]
    return AmplitudeCredentials(api_key=project.api_key, secret_key=project.secret_key, base_url=base_url)


# The document as ``GET /dwh-helper/openapi.json`` serves it with the default settings, which the app
# below has. Built here, not fetched from an app: schemathesis' fixture-based schemas do not run under
# pytest 9, and registering the blueprint at collection would precede the plugin module's hook into it.
schema = schemathesis.openapi.from_dict(openapi_document(api.url_prefix, Settings()), config=CONFIG)


def documented_statuses_only_for_upstream_failures(ctx: Any, response: Any, case: Any) -> None:
    """No server error but an upstream's (502/503/504), and then only where the operation says so."""
    status = response.status_code
    if status < 500:
        return
    documented = case.operation.definition.raw.get("responses", {})
    assert status in UPSTREAM_STATUSES and str(status) in documented, (
        f"{case.operation.label} answered {status}: {response.text[:500]}"
    )


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is a failure everywhere
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_to_the_document(plugin: PluginServer, case: schemathesis.Case) -> None:
    if any(LINE_BREAK.search(str(value)) for value in (case.path_parameters or {}).values()):
        # The API server's router cannot route a path with a line break to its mount (Starlette's
        # pattern stops there), so the server answers its own 404 and the plugin never sees the request.
        assert case.call(base_url=plugin.base).status_code == 404
        return
    case.call_and_validate(
        base_url=plugin.base,
        checks=[
            documented_statuses_only_for_upstream_failures,
            status_code_conformance,
            response_schema_conformance,
        ],
    )


def test_every_route_of_the_blueprint_is_documented(plugin: PluginServer) -> None:
    """The document covers the whole API: each route of ``/dwh-helper`` and each of its methods."""
    prefix = api.url_prefix
    routes = {
        (
            re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(prefix)).replace("{slug}", "{table}"),
            method.lower(),
        )
        for rule in plugin.flask_app.url_map.iter_rules()
        if rule.rule.startswith(prefix + "/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method)
        for path, item in schema.raw_schema["paths"].items()
        for method in item
        if method != "parameters"
    }

    assert routes == documented


def test_each_blueprint_documents_exactly_its_own_routes(plugin: PluginServer) -> None:
    """Per child blueprint: the routes it registers are the operations tagged with its name, and the
    reverse, so a route added to (or dropped from) one blueprint cannot hide behind another's."""
    prefix = api.url_prefix
    routes: dict[str, set[tuple[str, str]]] = {}
    for rule in plugin.flask_app.url_map.iter_rules():
        if not rule.rule.startswith(prefix + "/"):
            continue
        blueprint = rule.endpoint.split(".")[1]  # dwh_helper.<child>.<view>
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(prefix)).replace(
            "{slug}", "{table}"
        )
        routes.setdefault(blueprint, set()).update(
            (path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}
        )
    documented: dict[str, set[tuple[str, str]]] = {}
    for path, item in schema.raw_schema["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                (tag,) = operation["tags"]
                documented.setdefault(tag, set()).add((path, method))

    assert set(routes) == {"dwh", "docs", "s3", "appmetrica", "amplitude"}
    assert routes == documented


def test_the_document_is_valid_openapi_and_the_one_served(plugin: PluginServer) -> None:
    document = openapi_document(f"{MOUNT}{api.url_prefix}", Settings())

    validate(document)
    served = httpx.get(f"{plugin.base}/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(document))


def test_row_schemas_are_the_tables_validation_rules() -> None:
    schemas = openapi_document(api.url_prefix, Settings())["components"]["schemas"]
    row, stored = schemas["EventsPartRow"], schemas["EventsPartStoredRow"]

    assert row["required"] == ["uuid", "event_type", "event_time"]
    assert list(row["properties"]) == [column.name for column in writable_columns(events_part)]
    assert row["properties"]["event_type"]["maxLength"] == 255
    assert row["properties"]["platform"]["type"] == ["string", "null"]
    assert row["properties"]["session_id"]["maximum"] == 2**63 - 1
    assert schemas["TechnicalDataRow"]["properties"]["data"]["type"] == ["object", "null"]
    assert stored["required"] == ["id", *row["properties"], "loaded_at"]
