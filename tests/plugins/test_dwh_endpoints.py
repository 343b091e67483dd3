"""``/dwh-helper/dwh/<table>`` over real HTTP, with the rows checked in the real database."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dwh_helper.services import Services, Settings
from include.common.db import engine_for
from include.dwh.config import AMPLITUDE_MOBILE_CONN_ID, DWH_CONN_ID, S3_CONN_ID
from include.dwh.schema import (
    TABLES,
    create_all,
    events_part,
    row_from_event,
    tmp_event_properties,
    user_locations,
)


def amplitude_event(i: int) -> dict[str, Any]:
    """One event as Amplitude's export writes it (every field the DWH tables use, and some they don't)."""
    minute = f"{i % 60:02d}"
    return {
        "uuid": f"6a1c2f0e-5b7d-4c1e-9f00-{i:012d}",
        "event_id": 100 + i,
        "event_type": "purchase" if i % 2 else "screen_view",
        "event_time": f"2024-02-01 10:{minute}:00.123456",
        "client_event_time": f"2024-02-01 10:{minute}:00.100000",
        "client_upload_time": f"2024-02-01 10:{minute}:01.5",
        "server_upload_time": f"2024-02-01T10:{minute}:02.000001Z",
        "server_received_time": f"2024-02-01 10:{minute}:02",
        "processed_time": f"2024-02-01 10:{minute}:03.250000",
        "user_creation_time": "2023-12-24 08:00:00",
        "user_id": f"user-{i}",
        "device_id": f"device-{i}",
        "amplitude_id": 900_000_000_000 + i,
        "session_id": 1_706_781_600_000 + i,
        "platform": "Android",
        "os_name": "android",
        "os_version": "14",
        "device_brand": "samsung",
        "device_manufacturer": "Samsung",
        "device_model": "SM-G991B",
        "device_family": "Samsung Galaxy S21",
        "device_type": "Samsung Galaxy S21",
        "device_carrier": "МТС",
        "language": "Russian",
        "adid": f"38400000-8cf0-11bd-b23e-{i:012d}",
        "idfa": None,
        "country": "Brazil",
        "region": "São Paulo",
        "city": "São Paulo",
        "dma": None,
        "location_lat": -23.5505 + i / 100,
        "location_lng": -46.6333,
        "ip_address": "2001:db8::7",
        "library": "amplitude-android/2.39.0",
        "version_name": "5.2.1",
        "start_version": "5.0.0",
        "app": 123456,
        "$schema": 12,
        "$insert_id": f"ins-{i}",
        "sample_rate": None,
        "amplitude_event_type": None,
        "is_attribution_event": False,
        "paying": i % 2 == 1,
        "event_properties": {"price": 9.99, "items": [1, 2], "title": "Туфли 👠", "n": i},
        "user_properties": {"plan": "pro", "cohorts": ["a", "b"]},
        "data": {"first_event": i == 0, "path": "/2/httpapi"},
        "groups": {},
        "group_properties": {},
    }


def normalized(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    """A row as posted or as read, comparable: timestamps as naive UTC datetimes."""
    out = {}
    for name, value in row.items():
        if isinstance(table.c[name].type, sa.DateTime) and value is not None:
            value = dt.datetime.fromisoformat(value)
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
        out[name] = value
    return out


def db_rows(engine: sa.Engine, table: sa.Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.select(table).order_by(table.c.id)).mappings()]


# Every request carries a token; the conftest's servers accept any (see AnyToken).
HTTP = httpx.Client(headers={"Authorization": "Bearer test-token"}, timeout=60)


def post(url: str, body: Any, **kwargs: Any) -> httpx.Response:
    return HTTP.post(url, json=body, timeout=60, **kwargs)


# ----------------------------------------------------------------------------------- round trips


def test_every_table_round_trips_through_post_and_get(dwh_engine, dwh_api):
    base = dwh_api(dwh_engine)
    for slug, table in TABLES.items():
        posted = [row_from_event(table, amplitude_event(i)) for i in range(3)]

        created = post(f"{base}/dwh/{slug}", {"data": posted})

        assert created.status_code == 201, created.text
        result = created.json()
        assert result["count"] == 3 and result["batches"] == 1
        stored = db_rows(dwh_engine, table)
        assert [row["id"] for row in stored] == result["inserted_ids"]
        assert [row["uuid"] for row in stored] == [row["uuid"] for row in posted]
        assert len({row["loaded_at"] for row in stored}) == 1  # one write, one loaded_at

        listed = HTTP.get(f"{base}/dwh/{slug}").json()
        assert (listed["count"], listed["total"]) == (3, 3)
        assert [row["id"] for row in listed["rows"]] == result["inserted_ids"]
        for sent, got in zip(posted, listed["rows"], strict=True):
            assert list(got) == [column.name for column in table.columns]  # table order, all columns
            got = {name: value for name, value in got.items() if name in sent}
            assert normalized(table, got) == normalized(table, sent), slug


def test_values_are_stored_with_their_types(dwh_engine, dwh_api):
    """What lands in the database: UTC timestamps with microseconds, JSON as text, real booleans."""
    base = dwh_api(dwh_engine)
    event = amplitude_event(7)
    post(f"{base}/dwh/technical-data", {"data": [row_from_event(TABLES["technical-data"], event)]})
    post(f"{base}/dwh/event-properties", {"data": [row_from_event(tmp_event_properties, event)]})

    technical = db_rows(dwh_engine, TABLES["technical-data"])[0]
    assert technical["insert_id"] == "ins-7" and technical["schema_version"] == 12
    assert technical["client_upload_time"] == dt.datetime(2024, 2, 1, 10, 7, 1, 500000)
    assert technical["is_attribution_event"] is False
    assert json.loads(technical["data"]) == {"first_event": False, "path": "/2/httpapi"}
    properties = db_rows(dwh_engine, tmp_event_properties)[0]
    assert json.loads(properties["event_properties"])["title"] == "Туфли 👠"
    assert properties["event_time"] == dt.datetime(2024, 2, 1, 10, 7, 0, 123456)


# -------------------------------------------------------------------------------------- chunking


def test_rows_limit_splits_a_post_into_batches_with_ids_in_order(dwh_engine, dwh_api):
    base = dwh_api(dwh_engine, max_rows_per_insert=4)
    events = [amplitude_event(i) for i in range(10)]

    first = post(f"{base}/dwh/events-part", {"data": [row_from_event(events_part, e) for e in events]}).json()
    second = post(f"{base}/dwh/events-part", {"data": [row_from_event(events_part, events[0])]}).json()

    assert (first["count"], first["batches"]) == (10, 3)  # 4 + 4 + 2
    assert (second["count"], second["batches"]) == (1, 1)
    stored = db_rows(dwh_engine, events_part)
    assert [row["id"] for row in stored] == first["inserted_ids"] + second["inserted_ids"]
    assert [row["uuid"] for row in stored] == [e["uuid"] for e in events] + [events[0]["uuid"]]
    assert [row["event_id"] for row in stored][:10] == list(range(100, 110))


def test_bytes_limit_splits_a_post_into_batches(dwh_engine, dwh_api):
    """A row's bytes are those of its bound parameters: UTF-8 text, JSON as compact text, and
    8 bytes per number, boolean or timestamp (loaded_at included)."""
    rows = [{"uuid": f"u-{i}", "event_properties": {"note": "é" * 10}} for i in range(5)]
    # uuid + the JSON text {"note":"éééééééééé"} ("é" is 2 bytes in UTF-8) + loaded_at
    row_bytes = len("u-0") + len('{"note":"') + 10 * 2 + len('"}') + 8
    base = dwh_api(dwh_engine, max_write_batch_bytes=2 * row_bytes + row_bytes // 2)

    result = post(f"{base}/dwh/event-properties", {"data": rows}).json()

    assert (result["count"], result["batches"]) == (5, 3)  # 2 + 2 + 1 rows
    stored = db_rows(dwh_engine, tmp_event_properties)
    assert [row["id"] for row in stored] == result["inserted_ids"]
    assert [row["uuid"] for row in stored] == [f"u-{i}" for i in range(5)]


def test_batch_exactly_at_the_bytes_limit_is_not_split(sqlite_dwh_engine, dwh_api):
    rows = [{"uuid": f"u-{i}", "event_properties": {}} for i in range(4)]
    base = dwh_api(sqlite_dwh_engine, max_write_batch_bytes=4 * (3 + 2 + 8))

    result = post(f"{base}/dwh/event-properties", {"data": rows}).json()

    assert (result["count"], result["batches"]) == (4, 1)


def test_psycopg2_driver_returns_ids_in_order_too(postgres_conn, dwh_api):
    """PostgreSQL without psycopg 3 goes through SQLAlchemy's ordered INSERT ... RETURNING."""
    url = engine_for(postgres_conn(DWH_CONN_ID)).url.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(url)
    try:
        base = dwh_api(engine, max_rows_per_insert=3)
        rows = [row_from_event(events_part, amplitude_event(i)) for i in range(7)]

        result = post(f"{base}/dwh/events-part", {"data": rows}).json()

        assert (result["count"], result["batches"]) == (7, 3)
        stored = db_rows(engine, events_part)
        assert [row["id"] for row in stored] == result["inserted_ids"]
        assert [row["uuid"] for row in stored] == [row["uuid"] for row in rows]
    finally:
        engine.dispose()


# ------------------------------------------------------------------------- all or nothing, 422


def test_invalid_rows_are_reported_by_row_and_field_and_nothing_is_written(dwh_engine, dwh_api):
    base = dwh_api(dwh_engine, max_rows_per_insert=2)  # rows 0-3 are sent in two INSERTs first
    rows = [row_from_event(events_part, amplitude_event(i)) for i in range(7)]
    rows[5]["event_time"] = "yesterday"
    rows[6]["colour"] = "red"
    del rows[6]["event_type"]

    response = post(f"{base}/dwh/events-part", {"data": rows})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation failed" and body["truncated"] is False
    assert body["errors"] == [
        {"row": 5, "field": "event_time", "message": "'yesterday' is not an ISO 8601 timestamp"},
        {"row": 6, "field": "colour", "message": "is not a column of this table"},
        {"row": 6, "field": "event_type", "message": "is required"},
    ]
    assert "row 5, field 'event_time'" in body["detail"]
    assert db_rows(dwh_engine, events_part) == []


@pytest.mark.parametrize(
    ("row_1", "error_1"),
    [
        ('{"uuid": "u-1", "location_lat": 1e999}', ("location_lat", "expected a finite number")),
        (
            '{"uuid": "u-1", "ip_address": "\\ud800"}',
            ("ip_address", "contains an unpaired UTF-16 surrogate, which is not valid Unicode text"),
        ),
        ('{"uuid": "u-1", "location_lat": NaN}', ("location_lat", "expected a finite number")),
    ],
    ids=["rows-split-by-msgspec", "surrogate-body", "nan-body"],
)
def test_values_json_allows_only_in_python_are_refused_by_the_same_rules(dwh_engine, dwh_api, row_1, error_1):
    """Rows are decoded and checked by msgspec where it can; text it refuses but Python's decoder reads
    (NaN, a number beyond a double, an unpaired surrogate: the last two in a body msgspec cannot even
    split into rows) is checked by the same rules, with the same messages."""
    base = dwh_api(dwh_engine, max_rows_per_insert=2)
    rows = [json.dumps({"uuid": f"u-{i}", "location_lat": 1.5, "ip_address": "::1"}) for i in range(6)]
    rows[1] = row_1
    rows[3] = '{"uuid": "u-3", "location_lng": 1e400, "amplitude_id": 1.0}'
    body = '{"data": [' + ", ".join(rows) + "]}"

    response = HTTP.post(
        f"{base}/dwh/user-locations", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text[:300]
    errors = [(e["row"], e["field"], e["message"]) for e in response.json()["errors"]]
    assert errors == [
        (1, *error_1),
        (3, "location_lng", "expected a finite number"),
        (3, "amplitude_id", "expected an integer, got a number"),
    ]
    assert db_rows(dwh_engine, user_locations) == []


def test_malformed_body_after_written_batches_writes_nothing(dwh_engine, dwh_api):
    base = dwh_api(dwh_engine, max_rows_per_insert=1)
    rows = [row_from_event(events_part, amplitude_event(i)) for i in range(3)]
    body = json.dumps({"data": rows})[:-1] + ', "more": []}'

    response = HTTP.post(
        f"{base}/dwh/events-part", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert "Expecting '}'" in response.json()["detail"]
    assert db_rows(dwh_engine, events_part) == []


def test_row_larger_than_one_insert_may_carry_is_invalid(sqlite_dwh_engine, dwh_api):
    base = dwh_api(sqlite_dwh_engine, max_write_batch_bytes=100)
    rows = [{"uuid": "small", "event_properties": {}}, {"uuid": "big", "event_properties": {"x": "y" * 100}}]

    response = post(f"{base}/dwh/event-properties", {"data": rows})

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["row"] == 1 and error["field"] is None and "at most 100 bytes" in error["message"]
    assert db_rows(sqlite_dwh_engine, tmp_event_properties) == []


# ----------------------------------------------------------------------------- 400, 404, 413, 415


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"data": []}', "The data list is empty"),
        ('{"data": {"uuid": "u"}}', "data must be a list of rows, got an object"),
        ('{"data": null}', "data must be a list of rows, got null"),
        ('[{"uuid": "u"}]', 'The body must be a JSON object {"data": [row, ...]}'),
        ("{}", 'The body must be a JSON object {"data": [row, ...]}'),
        ('{"rows": []}', "Unexpected key 'rows'"),
        ('{"data": [{"uuid": "u", "event_properties": {}},]}', "not valid JSON: Expecting value: line 1"),
        ('{"data": [{"uuid": "u"} {"uuid": "v"}]}', "not valid JSON: Expecting ','"),
        ('{"data": [{"uuid": "u", "event_properties": {}}]} []', "not valid JSON: Extra data"),
        (
            '{"data": [{"uuid": "u", "event_properties": {}}], "data": []}',
            "Expecting '}' (data must be the only",
        ),
        ('{"data": [{"uuid": "u", "event_properties": {"a": "\\x"}}]}', "not valid JSON: Invalid \\escape"),
        ("", 'The body must be a JSON object {"data": [row, ...]}'),
    ],
)
def test_malformed_bodies_are_400(sqlite_dwh_engine, dwh_api, body, detail):
    base = dwh_api(sqlite_dwh_engine)

    response = HTTP.post(
        f"{base}/dwh/event-properties", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert detail in response.json()["detail"]
    assert db_rows(sqlite_dwh_engine, tmp_event_properties) == []


def test_body_that_is_not_utf8_is_400(sqlite_dwh_engine, dwh_api):
    base = dwh_api(sqlite_dwh_engine)
    body = '{"data": [{"uuid": "é", "event_properties": {}}]}'.encode("latin-1")

    response = HTTP.post(
        f"{base}/dwh/event-properties", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400 and "not UTF-8" in response.json()["detail"]


def test_other_content_types_are_415(sqlite_dwh_engine, dwh_api):
    base = dwh_api(sqlite_dwh_engine)

    response = HTTP.post(f"{base}/dwh/event-properties", content='{"data": [{"uuid": "u"}]}')

    assert response.status_code == 415 and response.json()["error"] == "Unsupported Media Type"


def test_unknown_table_is_404(sqlite_dwh_engine, dwh_api):
    base = dwh_api(sqlite_dwh_engine)

    for response in (HTTP.get(f"{base}/dwh/events"), post(f"{base}/dwh/events", {"data": [{}]})):
        assert response.status_code == 404
        assert response.json()["error"] == "Not Found"
        assert "Unknown table 'events'" in response.json()["detail"]


def test_wrong_method_is_405_in_json(sqlite_dwh_engine, dwh_api):
    base = dwh_api(sqlite_dwh_engine)

    response = HTTP.delete(f"{base}/dwh/events-part")

    assert response.status_code == 405
    assert response.json()["error"] == "Method Not Allowed"
    assert "POST" in response.headers["Allow"]


def test_unknown_paths_under_the_plugin_are_404_in_json_and_airflow_keeps_its_pages(sqlite_dwh_engine, serve):
    plugin = serve(Services(dwh_engine=sqlite_dwh_engine))
    mount = plugin.base.removesuffix("/dwh-helper")

    ours = [HTTP.get(f"{plugin.base}/{path}") for path in ("nothing", "dwh/events-part/1", "dwh", "")]
    anonymous = httpx.get(f"{plugin.base}/nothing")
    airflow_s = [httpx.get(f"{mount}/{path}") for path in ("nothing", "dwh-helperx/dwh/events-part")]

    for response in [*ours, anonymous]:
        assert response.status_code == 404, response.url
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == "Not Found"
        assert "requested URL was not found" in response.json()["detail"]
    for response in airflow_s:
        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith("text/html")


# ------------------------------------------------------------------------------------- deep JSON

DEPTH = 50_000


@pytest.mark.parametrize(
    "body",
    [
        '{"data": [' + "[" * DEPTH + "]" * DEPTH + "]}",
        '{"data": [{"uuid": "u", "event_properties": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}]}",
    ],
    ids=["nested-rows", "nested-value"],
)
def test_a_body_nested_too_deeply_is_400(sqlite_dwh_engine, dwh_api, body):
    base = dwh_api(sqlite_dwh_engine)

    response = HTTP.post(
        f"{base}/dwh/event-properties", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"] == "Bad Request"
    assert "nests arrays or objects too deeply" in response.json()["detail"]
    assert "line 1 column 11 (char 10)" in response.json()["detail"]  # where the first row starts
    assert db_rows(sqlite_dwh_engine, tmp_event_properties) == []


# ---------------------------------------------------------------------------- timestamps' limits


def test_timestamps_beyond_the_years_utc_can_hold_are_422_naming_row_and_field(dwh_engine, dwh_api):
    base = dwh_api(dwh_engine)
    rows = [
        {"uuid": "first", "event_type": "open", "event_time": "0001-01-01T00:00:00"},
        {"uuid": "early", "event_type": "open", "event_time": "0001-01-01T00:00:00+05:00"},
        {"uuid": "late", "event_type": "open", "event_time": "9999-12-31T23:59:59.999999-00:01"},
        {"uuid": "last", "event_type": "open", "event_time": "9999-12-31T23:59:59.999999+00:00"},
    ]

    refused = post(f"{base}/dwh/events-part", {"data": rows})
    written = post(f"{base}/dwh/events-part", {"data": [rows[0], rows[3]]})

    assert refused.status_code == 422, refused.text
    assert [(e["row"], e["field"]) for e in refused.json()["errors"]] == [
        (1, "event_time"),
        (2, "event_time"),
    ]
    assert "outside the years 1 to 9999 once converted to UTC" in refused.json()["errors"][0]["message"]
    assert written.status_code == 201
    stored = db_rows(dwh_engine, events_part)
    assert [row["event_time"] for row in stored] == [
        dt.datetime(1, 1, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    ]


def five_rows_body() -> bytes:
    rows = [{"uuid": f"u-{i}", "event_properties": {}} for i in range(5)]
    return json.dumps({"data": rows}).encode()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_is_413_and_a_body_at_the_limit_is_not(sqlite_dwh_engine, dwh_api, chunked):
    """With Content-Length the size is refused before the body is read; a chunked body (no length)
    is refused once more than the limit has been read."""
    body = five_rows_body()
    base = dwh_api(sqlite_dwh_engine, max_request_bytes=len(body))
    url, headers = f"{base}/dwh/event-properties", {"Content-Type": "application/json"}

    def send(payload: bytes) -> httpx.Response:
        return HTTP.post(url, content=iter([payload]) if chunked else payload, headers=headers)

    at_limit = send(body)
    over_limit = send(body + b" ")

    assert ("Content-Length" in at_limit.request.headers) is not chunked
    assert at_limit.status_code == 201 and at_limit.json()["count"] == 5
    assert over_limit.status_code == 413
    assert over_limit.json()["error"] == "Request Entity Too Large"
    assert str(len(body)) in over_limit.json()["detail"]
    assert len(db_rows(sqlite_dwh_engine, tmp_event_properties)) == 5


# ------------------------------------------------------------------------------------------- GET


def test_get_pages_by_limit_and_offset_in_id_order(dwh_engine, dwh_api):
    base = dwh_api(dwh_engine, default_read_limit=10, max_read_limit=20)
    url = f"{base}/dwh/event-properties"
    rows = [{"uuid": f"u-{i}", "event_properties": {"i": i}} for i in range(25)]
    ids = post(url, {"data": rows}).json()["inserted_ids"]

    default = HTTP.get(url).json()
    page = HTTP.get(url, params={"limit": 5, "offset": 20}).json()
    largest = HTTP.get(url, params={"limit": 20, "offset": 10}).json()
    beyond = HTTP.get(url, params={"offset": 100}).json()

    assert [r["id"] for r in default["rows"]] == ids[:10]
    assert [r["event_properties"] for r in page["rows"]] == [{"i": i} for i in range(20, 25)]
    assert [r["id"] for r in largest["rows"]] == ids[10:25]
    # count: the rows in the answer, as in the DWH Helper; total: the rows in the table
    assert [(d["count"], d["total"]) for d in (default, page, largest)] == [(10, 25), (5, 25), (15, 25)]
    assert list(default) == ["rows", "count", "total"]
    assert beyond == {"rows": [], "count": 0, "total": 25}


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"limit": "0"}, "'limit' must be an integer from 1 to 20, got '0'"),
        ({"limit": "21"}, "'limit' must be an integer from 1 to 20, got '21'"),
        ({"limit": "ten"}, "'limit' must be an integer from 1 to 20, got 'ten'"),
        ({"offset": "-1"}, "'offset' must be an integer from 0 to 9223372036854775807, got '-1'"),
        ({"offset": "1.5"}, "'offset' must be an integer from 0 to 9223372036854775807, got '1.5'"),
        ({"offset": str(2**63)}, "'offset' must be an integer from 0 to 9223372036854775807"),
    ],
)
def test_get_rejects_bad_limit_and_offset(sqlite_dwh_engine, dwh_api, params, detail):
    base = dwh_api(sqlite_dwh_engine, default_read_limit=10, max_read_limit=20)

    response = HTTP.get(f"{base}/dwh/events-part", params=params)

    assert response.status_code == 400 and detail in response.json()["detail"]


# -------------------------------------------------------------------------------------- services


def test_default_services_use_the_dwh_db_connection_and_create_the_tables(sqlite_conn, serve):
    sqlite_conn(DWH_CONN_ID, "dwh.sqlite")
    base = serve(None).base

    created = post(f"{base}/dwh/user-locations", {"data": [{"uuid": "u-1", "city": "Pune"}]})

    assert created.status_code == 201
    engine = engine_for(DWH_CONN_ID)
    assert all(sa.inspect(engine).has_table(table.name) for table in TABLES.values())
    assert [row["city"] for row in db_rows(engine, TABLES["user-locations"])] == ["Pune"]
    engine.dispose()


def test_settings_come_from_airflow_variables(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_DWH_MAX_ROWS_PER_INSERT", "250")
    monkeypatch.setenv("AIRFLOW_VAR_DWH_MAX_REQUEST_BYTES", "1048576")

    settings = Services.from_airflow().settings

    assert settings == Settings(max_rows_per_insert=250, max_request_bytes=1_048_576)


def test_a_bad_airflow_variable_is_named(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_DWH_MAX_WRITE_BATCH_BYTES", "10MB")

    with pytest.raises(ValueError, match="dwh_max_write_batch_bytes must be an integer, got '10MB'"):
        _ = Services.from_airflow().settings


def test_clients_are_built_once_from_their_connection_and_missing_ones_are_named():
    built: list[str] = []

    def factory(conn_id: str) -> str:
        built.append(conn_id)
        return f"client for {conn_id}"

    services = Services(s3=factory, amplitude=factory)

    assert built == []  # nothing is built before it is used
    assert services.s3() == services.s3() == "client for dwh_s3"
    assert services.amplitude("mobile") == "client for amplitude_mobile"
    assert built == [S3_CONN_ID, AMPLITUDE_MOBILE_CONN_ID]
    with pytest.raises(ValueError, match="unknown Amplitude source 'ios'"):
        services.amplitude("ios")
    with pytest.raises(RuntimeError, match="AppMetrica is not configured"):
        services.appmetrica()


def test_database_errors_are_500_in_json(sqlite_dwh_engine, dwh_api):
    base = dwh_api(sqlite_dwh_engine)
    assert HTTP.get(f"{base}/dwh/events-part").status_code == 200  # creates the tables
    with sqlite_dwh_engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE events_part"))

    response = HTTP.get(f"{base}/dwh/events-part")

    assert response.status_code == 500
    assert response.json() == {"error": "Database Error", "detail": "no such table: events_part"}


def test_create_all_is_idempotent(sqlite_dwh_engine):
    create_all(sqlite_dwh_engine)
    create_all(sqlite_dwh_engine)

    assert all(sa.inspect(sqlite_dwh_engine).has_table(table.name) for table in TABLES.values())
