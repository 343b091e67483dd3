"""The DWH batch writer's chunking arithmetic and the row rules derived from the tables."""

from __future__ import annotations

import datetime as dt
import json
from random import Random
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from include.dwh.batch_writer import chunk_rows, read_rows, write_rows
from include.dwh.json_rows import JsonRows
from include.dwh.pg_copy import binary_copy_types
from include.dwh.schema import (
    TABLES,
    create_all,
    events_part,
    mobile_devices,
    permanent_user_properties,
    row_from_event,
    technical_data,
    tmp_event_properties,
    user_locations,
)
from include.dwh.validation import (
    ColumnRule,
    RowError,
    RowValidator,
    ValidationError,
    column_rules,
    sqlite_timestamp,
)

# --------------------------------------------------------------------------------------- chunking


def chunks(sizes: list[int], max_rows: int, max_bytes: int) -> list[list[int]]:
    """Chunk rows named by their index, of the given sizes."""
    return list(chunk_rows([(index, size) for index, size in enumerate(sizes)], max_rows, max_bytes))


def test_rows_limit_closes_chunks():
    assert chunks([1] * 7, max_rows=3, max_bytes=1000) == [[0, 1, 2], [3, 4, 5], [6]]


def test_bytes_limit_closes_chunks_before_the_row_that_would_overflow():
    assert chunks([40, 40, 30, 50, 10], max_rows=100, max_bytes=100) == [[0, 1], [2, 3, 4]]


def test_a_chunk_may_fill_both_limits_exactly():
    assert chunks([25, 25, 25, 25, 1], max_rows=4, max_bytes=100) == [[0, 1, 2, 3], [4]]


def test_whichever_limit_comes_first_wins():
    assert chunks([10] * 6, max_rows=2, max_bytes=1000) == [[0, 1], [2, 3], [4, 5]]
    assert chunks([10] * 6, max_rows=1000, max_bytes=25) == [[0, 1], [2, 3], [4, 5]]


def test_an_oversized_row_gets_a_chunk_of_its_own():
    assert chunks([10, 500, 10], max_rows=10, max_bytes=100) == [[0], [1], [2]]


def test_no_rows_no_chunks():
    assert chunks([], max_rows=10, max_bytes=100) == []


@pytest.mark.parametrize(("max_rows", "max_bytes"), [(0, 100), (10, 0)])
def test_limits_must_be_positive(max_rows, max_bytes):
    with pytest.raises(ValueError, match="must be positive"):
        chunks([1], max_rows, max_bytes)


# ------------------------------------------------------------------------------ rules from tables


def test_rules_are_read_off_the_columns():
    rules = column_rules(events_part)

    assert rules["uuid"] == ColumnRule("uuid", "string", required=True, max_length=36)
    assert rules["event_time"] == ColumnRule("event_time", "timestamp", required=True)
    assert rules["session_id"] == ColumnRule("session_id", "integer", False, None, -(2**63), 2**63 - 1)
    assert column_rules(technical_data)["schema_version"].max_value == 2**31 - 1
    assert column_rules(technical_data)["data"].kind == "json"
    assert column_rules(tmp_event_properties)["event_properties"].required
    assert column_rules(permanent_user_properties)["paying"].kind == "boolean"
    assert column_rules(user_locations)["location_lat"].kind == "number"
    assert column_rules(user_locations)["ip_address"].max_length == 45


def test_every_client_column_of_every_table_has_a_rule_and_server_columns_have_none():
    for table in TABLES.values():
        names = [column.name for column in table.columns]
        assert names[0] == "id" and names[-1] == "loaded_at", table.name
        assert list(column_rules(table)) == names[1:-1]


def test_an_event_is_split_by_source_field_names():
    event = {"uuid": "u", "$insert_id": "i-1", "$schema": 12, "device_carrier": "Vivo", "device_id": "d"}

    assert row_from_event(technical_data, event)["insert_id"] == "i-1"
    assert row_from_event(technical_data, event)["schema_version"] == 12
    device = row_from_event(mobile_devices, event)
    assert device["carrier"] == "Vivo" and device["device_id"] == "d" and device["idfa"] is None
    assert set(device) == set(column_rules(mobile_devices))


# ----------------------------------------------------------------------------------- validation


def check(table: sa.Table, row: Any) -> tuple[dict[str, Any], int]:
    return RowValidator(table).check(7, row)


def errors_of(table: sa.Table, row: Any) -> list[tuple[str | None, str]]:
    with pytest.raises(ValidationError) as caught:
        check(table, row)
    assert {error.row for error in caught.value.errors} == {7}
    return [(error.field, error.message) for error in caught.value.errors]


def test_a_row_shaped_like_a_valid_one_is_still_checked_value_by_value():
    """The validator remembers the types of valid rows; a bad value in a row of the same types must
    still be refused with the field-by-field message, and the next valid row accepted again."""
    validator = RowValidator(user_locations)
    good = {"uuid": "u-1", "amplitude_id": 5, "event_time": "2024-02-01 10:00:00", "location_lat": 1.5}
    assert validator.check(0, good) == check(user_locations, good)
    bad_values = {
        "uuid": "x" * 37,
        "amplitude_id": 2**63,
        "event_time": "2024-02-31 10:00:00",
        "location_lat": float("nan"),
    }
    for field, value in bad_values.items():
        with pytest.raises(ValidationError) as caught:
            validator.check(3, {**good, field: value})
        assert [(error.row, error.field) for error in caught.value.errors] == [(3, field)]
    for text in ("a\x00b", "\ud800"):
        with pytest.raises(ValidationError, match="NUL|surrogate"):
            validator.check(4, {**good, "uuid": text})
    with pytest.raises(ValidationError, match="outside the years"):
        validator.check(5, {**good, "event_time": "0001-01-01T00:00:00+05:00"})
    values, size = validator.check(6, {**good, "uuid": "ü"})
    assert values["uuid"] == "ü" and size == 2 + 8 + 8 + 8


def test_a_valid_row_is_converted_for_the_database_and_sized():
    values, size = check(
        technical_data,
        {
            "uuid": "ü-1",  # 4 bytes in UTF-8
            "app": 123,
            "sample_rate": 1,
            "is_attribution_event": True,
            "processed_time": "2024-02-01T12:30:00.5+02:00",
            "data": {"k": "Ж"},
        },
    )

    assert values["processed_time"] == dt.datetime(2024, 2, 1, 10, 30, 0, 500000)  # UTC, naive
    assert values["sample_rate"] == 1.0 and isinstance(values["sample_rate"], float)
    assert values["data"] == '{"k":"Ж"}'
    assert values["insert_id"] is None and list(values) == list(column_rules(technical_data))
    assert size == 4 + 8 + 8 + 8 + 8 + len('{"k":"Ж"}'.encode())


def test_amplitude_timestamps_parse_naive_as_utc():
    values, _ = check(
        tmp_event_properties, {"uuid": "u", "event_properties": {}, "event_time": "2024-02-01 10:00:00.123"}
    )

    assert values["event_time"] == dt.datetime(2024, 2, 1, 10, 0, 0, 123000)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("uuid", 12, "expected a string, got a number"),
        ("uuid", "x" * 37, "is 37 characters long; at most 36 are allowed"),
        ("uuid", "a\x00b", "contains a NUL character"),
        ("uuid", "\ud800", "unpaired UTF-16 surrogate"),
        ("event_time", "2024-13-01", "'2024-13-01' is not an ISO 8601 timestamp"),
        ("event_time", 1706781600000, "expected an ISO 8601 timestamp string, got a number"),
        ("event_time", "0001-01-01T00:00:00+05:00", "is outside the years 1 to 9999 once converted to UTC"),
        ("event_time", "9999-12-31T23:30:00-01:00", "is outside the years 1 to 9999 once converted to UTC"),
        ("event_type", None, "is required"),
        ("amplitude_id", "42", "expected an integer, got a string"),
        ("amplitude_id", True, "expected an integer, got a boolean"),
        ("amplitude_id", 4.0, "expected an integer, got a number"),
        ("amplitude_id", 2**63, "is out of range"),
        ("colour", "red", "is not a column of this table"),
        ("id", 1, "is set when the row is written"),
        ("loaded_at", "2024-01-01", "is set when the row is written"),
    ],
)
def test_each_bad_value_is_named(field, value, message):
    row = {"uuid": "u", "event_type": "open", "event_time": "2024-02-01 10:00:00", field: value}

    [(bad_field, bad_message)] = errors_of(events_part, row)

    assert bad_field == field and message in bad_message


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("location_lat", float("nan"), "expected a finite number"),
        ("location_lat", 10**400, "too large for a double-precision number"),
        ("location_lng", "1.5", "expected a number, got a string"),
    ],
)
def test_numbers_must_be_finite_doubles(field, value, message):
    [(bad_field, bad_message)] = errors_of(user_locations, {"uuid": "u", field: value})

    assert bad_field == field and message in bad_message


def test_json_columns_take_objects_that_json_can_represent():
    assert errors_of(tmp_event_properties, {"uuid": "u", "event_properties": [1]}) == [
        ("event_properties", "expected a JSON object, got an array")
    ]
    assert errors_of(tmp_event_properties, {"uuid": "u", "event_properties": {"x": float("inf")}}) == [
        ("event_properties", "contains NaN or Infinity, which JSON cannot represent")
    ]
    assert errors_of(permanent_user_properties, {"amplitude_id": 1, "paying": "yes"}) == [
        ("paying", "expected true or false, got a string")
    ]


def test_a_json_value_too_deep_to_write_is_invalid():
    deep: dict[str, Any] = {}
    for _ in range(100_000):  # deeper than Python's recursion limit, which json.dumps works within
        deep = {"a": deep}

    assert errors_of(tmp_event_properties, {"uuid": "u", "event_properties": deep}) == [
        ("event_properties", "nests arrays or objects too deeply")
    ]


def test_all_problems_of_a_row_are_reported_together():
    assert errors_of(events_part, {"uuid": None, "event_time": "soon", "extra": 1}) == [
        ("event_time", "'soon' is not an ISO 8601 timestamp"),
        ("extra", "is not a column of this table"),
        ("uuid", "is required"),
        ("event_type", "is required"),
    ]


def test_a_row_must_be_an_object():
    assert errors_of(events_part, ["u", "open"]) == [(None, "expected a JSON object, got an array")]


def test_validation_error_summarises_the_first_error():
    error = ValidationError([RowError(3, "uuid", "is required"), RowError(9, None, "expected a JSON object")])

    assert str(error) == "row 3, field 'uuid': is required (1 more error)"
    truncated = ValidationError([RowError(0, None, "bad"), RowError(5, "x", "bad")], truncated=True)
    assert str(truncated) == "row 0: bad (1 more error; rows after row 5 not checked)"


# ------------------------------------------------------------------------- rows as JSON text

#: Row texts for each table's fast path: valid ones and every kind of value the validator refuses.
JSON_ROW_TEXTS = {
    events_part: [
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01 10:00:00.123456"}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01 10:00:00.000000"}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01T10:00:00.5+03:00", "event_id": null}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-W05-4 10:00:00.123456"}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01 10:00:00.123+01"}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01", "uuid": "v"}',
        '{"uuid": "\\u00fc\\ud83d\\ude00", "event_type": "open", "event_time": "2024-02-01"}',
        '{"uuid": "a\\u0000b", "event_type": "open", "event_time": "2024-02-01"}',
        '{"uuid": "\\ud800", "event_type": "open", "event_time": "2024-02-01"}',
        '{"uuid": "' + "x" * 37 + '", "event_type": "open", "event_time": "2024-02-01"}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-31 10:00:00"}',
        '{"uuid": "u", "event_type": "open", "event_time": "0001-01-01T00:00:00+05:00"}',
        '{"uuid": "u", "event_type": null, "event_time": "2024-02-01"}',
        '{"uuid": "u", "event_time": "2024-02-01"}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01", "amplitude_id": 4.0}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01", "amplitude_id": true}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01", "amplitude_id": 9223372036854775808}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01", "amplitude_id": -9223372036854775808}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01", "id": 1}',
        '{"uuid": "u", "event_type": "open", "event_time": "2024-02-01", "colour": "red"}',
        '["u", "open"]',
        "null",
    ],
    user_locations: [
        '{"uuid": "u", "location_lat": 1, "location_lng": -0.0, "amplitude_id": 5}',
        '{"uuid": "u", "location_lat": 1e400}',
        '{"uuid": "u", "location_lat": NaN}',
        '{"uuid": "u", "location_lat": 1' + "0" * 400 + "}",
        '{"uuid": "u", "location_lat": 123456789012345678901234567890}',
        '{"uuid": "u", "location_lat": "1.5"}',
    ],
    technical_data: [
        '{"uuid": "u", "data": {"k": "\\u0416", "big": 123456789012345678901234567890, "f": 0.1}}',
        '{"uuid": "u", "data": {"x": Infinity}}',
        '{"uuid": "u", "data": {"x": 1e400}}',
        '{"uuid": "u", "data": {"a": 1, "a": 2}}',
        '{"uuid": "u", "data": [1]}',
        '{"uuid": "u", "data": ' + '{"a": ' * 2000 + "1" + "}" * 2000 + "}",
    ],
    permanent_user_properties: [
        '{"amplitude_id": 1, "paying": true, "event_time": "2024-02-01 10:00:00.1"}',
        '{"amplitude_id": 1, "paying": 0}',
    ],
}


@pytest.mark.parametrize("timestamps_as_text", [False, True], ids=["datetimes", "text"])
@pytest.mark.parametrize(
    ("table", "text"), [(table, text) for table, texts in JSON_ROW_TEXTS.items() for text in texts]
)
def test_a_row_checked_from_its_json_text_gets_what_the_validator_gives_or_goes_to_it(
    table, text, timestamps_as_text
):
    """The fast path accepts only rows the validator accepts, with equal values and size; it leaves
    every other row (``None``) to the validator, which names its problems. (A text msgspec cannot even
    split a body into, such as NaN or an unpaired surrogate, sends the whole body the slow way.)"""
    validator = RowValidator(table, timestamps_as_text=timestamps_as_text)
    try:
        raw = msgspec.json.decode(f"[{text}]".encode(), type=list[msgspec.Raw])[0]
    except (msgspec.DecodeError, RecursionError):
        fast = None
    else:
        fast = JsonRows(validator).check(raw)

    try:
        expected = validator.check_values(0, json.loads(text))
    except (ValidationError, RecursionError):
        assert fast is None
    else:
        assert fast is None or fast == expected


def test_timestamps_are_written_for_sqlite_as_isoformat_writes_them():
    """:func:`sqlite_timestamp` keeps a value's own text only where it is ``isoformat(" ")``'s."""
    random = Random(7)
    alphabet = "0123456789-: .T+Z,W"
    shapes = ["2024-02-01 10:00:00.123456", "2024-02-01 10:00:00.000000", "2024-02-01T10:00:00.123456"]
    samples = [
        "".join(c if random.random() < 0.95 else random.choice(alphabet) for c in random.choice(shapes))
        for _ in range(20_000)
    ]
    checked = 0
    for value in samples:
        try:
            timestamp = dt.datetime.fromisoformat(value)
        except ValueError:
            continue
        if timestamp.tzinfo is None:
            checked += 1
            assert sqlite_timestamp(value, timestamp) == timestamp.isoformat(" "), value
    assert checked > 1000


# ------------------------------------------------------------------------------- writing, reading


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dwh.sqlite'}")
    create_all(engine)
    yield engine
    engine.dispose()


def stored(engine: sa.Engine, table: sa.Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.select(table).order_by(table.c.id)).mappings()]


def test_write_counts_batches_and_returns_ids_in_input_order(engine):
    rows = [{"uuid": f"u-{i}", "event_properties": {"i": i}} for i in range(5)]

    result = write_rows(engine, tmp_event_properties, iter(rows), max_rows=2)

    assert (result.count, result.batches) == (5, 3)
    assert result.inserted_ids == [row["id"] for row in stored(engine, tmp_event_properties)]
    assert [row["uuid"] for row in stored(engine, tmp_event_properties)] == [f"u-{i}" for i in range(5)]


def test_errors_are_collected_up_to_the_limit_and_nothing_is_written(engine):
    rows = [{"uuid": f"u-{i}", "event_properties": {}} for i in range(4)] + [{"uuid": i} for i in range(10)]

    with pytest.raises(ValidationError) as caught:
        write_rows(engine, tmp_event_properties, rows, max_rows=2, max_errors=6)

    assert len(caught.value.errors) == 6 and caught.value.truncated
    assert caught.value.errors[:2] == [
        RowError(4, "uuid", "expected a string, got a number"),
        RowError(4, "event_properties", "is required"),
    ]
    assert stored(engine, tmp_event_properties) == []


def test_the_byte_limit_counts_loaded_at_and_rejects_rows_that_cannot_fit(engine):
    fits = {"uuid": "u", "event_properties": {}}  # 1 + 2 + 8 (loaded_at) = 11 bytes
    too_big = {"uuid": "uu", "event_properties": {}}  # 12 bytes

    assert write_rows(engine, tmp_event_properties, [fits, fits], max_bytes=11).batches == 2
    with pytest.raises(
        ValidationError, match="row 1: is 12 bytes as parameters; one INSERT may carry at most 11 bytes"
    ):
        write_rows(engine, tmp_event_properties, [fits, too_big], max_bytes=11)


def test_invalid_input_never_opens_a_connection():
    unreachable = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")

    with pytest.raises(ValidationError):
        write_rows(unreachable, events_part, [{"uuid": 1}])


def test_read_rows_bounds_limit_and_offset(engine):
    write_rows(
        engine, tmp_event_properties, [{"uuid": f"u-{i}", "event_properties": {"i": i}} for i in range(3)]
    )

    rows, count = read_rows(engine, tmp_event_properties, limit=2, offset=1)

    assert count == 3 and [row["event_properties"] for row in rows] == [{"i": 1}, {"i": 2}]
    assert isinstance(rows[0]["loaded_at"], str)
    for limit, offset in [(0, 0), (1001, 0), (1, -1)]:
        with pytest.raises(ValueError):
            read_rows(engine, tmp_event_properties, limit, offset)


# ------------------------------------------------------------------------ PostgreSQL's binary COPY


def server_types_of(table: sa.Table, **changed: str) -> dict[str, tuple[int, str]]:
    """``format_type`` of each column as ``create_all`` makes it on PostgreSQL (oids made up)."""
    dialect = postgresql.dialect()
    names = {"VARCHAR": "character varying", "TIMESTAMP WITHOUT TIME ZONE": "timestamp without time zone"}
    types = {}
    for oid, column in enumerate(table.columns):
        compiled = column.type.compile(dialect).split("(")[0]
        types[column.name] = (oid, changed.get(column.name, names.get(compiled, compiled.lower())))
    return types


def test_binary_copy_only_where_every_column_has_a_type_it_writes_exactly():
    columns = ("id", *column_rules(technical_data), "loaded_at")
    assert binary_copy_types(technical_data, columns, server_types_of(technical_data)) == list(range(14))
    for column, server_type in [
        ("schema_version", "bigint"),  # wider: fine
        ("id", "integer"),  # a serial id: its sequence keeps it in range
    ]:
        types = server_types_of(technical_data, **{column: server_type})
        assert binary_copy_types(technical_data, columns, types) is not None, column
    for column, server_type in [
        ("app", "integer"),  # narrower than the rule: the server's own error, from text
        ("sample_rate", "numeric"),
        ("processed_time", "timestamp with time zone"),
        ("library", "character"),
        ("insert_id", "some_domain"),
    ]:
        types = server_types_of(technical_data, **{column: server_type})
        assert binary_copy_types(technical_data, columns, types) is None, column


@pytest.mark.postgres
def test_binary_and_text_copy_store_the_same_values(postgres_conn):
    """A table of the expected types is written in COPY's binary format, one with a column of another
    type (a domain here) in text; both read back the same, whether written by ``write_rows`` on its
    own connection or, as an export load writes them, in COPY blocks formatted on another
    (``replace_periods``)."""
    from include.common.db import engine_for
    from include.dwh.exports import LoadKey, ensure_load_log, replace_periods

    rows = {
        technical_data: [
            {"uuid": "u-1", "$insert_id": None, "app": 2**62, "schema_version": -(2**31), "sample_rate": 0.1,
             "client_upload_time": "2024-02-05 10:00:00.000001", "server_received_time": "0001-01-01T00:00:00",
             "processed_time": "2024-02-05T12:00:00.5+02:00", "is_attribution_event": True,
             "data": {"nested": [1, 2.5, "ação 😀", None, {"e": 1e300}]}, "library": "x" * 128},
            {"uuid": "u-2", "sample_rate": -0.0, "is_attribution_event": False, "processed_time": "9999-12-31 23:59:59.999999"},
        ],
        user_locations: [
            {"uuid": "u-1", "location_lat": -23.5505199, "location_lng": 1e-300, "city": "São Paulo", "amplitude_id": -1},
            {"uuid": "u-2", "ip_address": "2001:db8::1", "event_time": "2024-02-29 23:59:59"},
        ],
    }  # fmt: skip
    stored_by_path = []
    for domain, blocks in [(False, False), (True, False), (False, True), (True, True)]:
        engine = engine_for(postgres_conn(f"dwh_{domain}_{blocks}"))
        try:
            create_all(engine)
            if domain:
                with engine.begin() as conn:
                    conn.exec_driver_sql("CREATE DOMAIN plain_text AS text")
                    for table in rows:
                        conn.exec_driver_sql(f"ALTER TABLE {table.name} ALTER COLUMN uuid TYPE plain_text")
            if blocks:
                ensure_load_log(engine)
                # one event a record, each feeding a row of every table, as the Amplitude split does
                events = zip(*rows.values(), strict=True)
                split = (
                    {t.name: row_from_event(t, e) for t, e in zip(rows, event, strict=True)}
                    for event in events
                )
                replace_periods(
                    engine, LoadKey("amplitude", "web", "2024-W06"), list(rows), split, max_rows=1
                )
            else:
                for table, table_rows in rows.items():
                    write_rows(engine, table, [row_from_event(table, row) for row in table_rows])
            stored_by_path.append(
                {table: [{**row, "loaded_at": None} for row in stored(engine, table)] for table in rows}
            )
        finally:
            engine.dispose()
    assert stored_by_path[1:] == 3 * stored_by_path[:1]
    assert stored_by_path[0][technical_data][0]["app"] == 2**62


@pytest.fixture
def postgres_engine(postgres_conn):
    from include.common.db import engine_for

    engine = engine_for(postgres_conn("dwh_copy"))
    create_all(engine)
    yield engine
    engine.dispose()


def numbered_rows(count: int, **changed: dict[str, Any]) -> list[dict[str, Any]]:
    """``count`` valid ``tmp_event_properties`` rows; ``changed`` replaces row ``int(key)``."""
    rows = [{"uuid": f"u-{i}", "event_properties": {"i": i}} for i in range(count)]
    for index, row in changed.items():
        rows[int(index)] = row
    return rows


@pytest.mark.postgres
def test_a_list_and_an_iterator_land_the_same_rows_with_ids_rising_in_input_order(postgres_engine):
    """A list (one COPY) and an iterator (a COPY a chunk) of the same rows store the same values, with
    ids rising in input order; an id another writer drew between the writes goes to neither."""
    rows = numbered_rows(2_500)
    first = write_rows(postgres_engine, tmp_event_properties, rows, max_rows=1_000)
    with postgres_engine.begin() as conn:  # another writer takes the next id
        taken = conn.exec_driver_sql("SELECT nextval('tmp_event_properties_id_seq')").scalar_one()
    second = write_rows(postgres_engine, tmp_event_properties, iter(rows), max_rows=1_000)

    assert (first.count, first.batches, second.count, second.batches) == (2_500, 3, 2_500, 3)
    assert first.inserted_ids == list(range(1, 2_501))
    assert taken == 2_501 and second.inserted_ids == list(range(2_502, 5_002))
    landed = stored(postgres_engine, tmp_event_properties)
    assert [row["id"] for row in landed] == first.inserted_ids + second.inserted_ids
    assert [(row["uuid"], json.loads(row["event_properties"])) for row in landed] == 2 * [
        (row["uuid"], row["event_properties"]) for row in rows
    ]


@pytest.mark.postgres
def test_an_invalid_row_after_rows_went_into_the_open_copy_leaves_nothing(postgres_engine):
    rows = numbered_rows(2_500, **{"2100": {"uuid": 7, "event_properties": {}}})

    with pytest.raises(ValidationError, match="row 2100"):
        write_rows(postgres_engine, tmp_event_properties, rows, max_rows=1_000)

    assert stored(postgres_engine, tmp_event_properties) == []
    assert write_rows(postgres_engine, tmp_event_properties, numbered_rows(3)).count == 3


@pytest.mark.postgres
def test_a_row_the_server_refuses_in_the_open_copy_rolls_back_every_batch(postgres_engine):
    """The server finds the bad row while the COPY streams (here a CHECK the validator does not know);
    the error reaches the caller, nothing is stored, and the pooled connection writes again."""
    import psycopg

    with postgres_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE tmp_event_properties ADD CONSTRAINT not_bad CHECK (uuid <> 'bad')")
    rows = numbered_rows(2_500, **{"1500": {"uuid": "bad", "event_properties": {}}})

    with pytest.raises(psycopg.errors.CheckViolation):
        write_rows(postgres_engine, tmp_event_properties, rows, max_rows=1_000)

    assert stored(postgres_engine, tmp_event_properties) == []
    assert write_rows(postgres_engine, tmp_event_properties, numbered_rows(3)).inserted_ids == [
        2_501,
        2_502,
        2_503,
    ]


class RowsBesideAnotherWriter(list):
    """A list of rows (so its size is known) that lets another writer draw an id from the table's
    sequence when row ``at`` is read: by then the first chunk is written and the second not yet."""

    def __init__(self, rows: list[dict[str, Any]], engine: sa.Engine, at: int) -> None:
        super().__init__(rows)
        self.engine, self.at, self.taken = engine, at, None

    def __iter__(self):
        for index, row in enumerate(super().__iter__()):
            if index == self.at:
                with self.engine.begin() as conn:
                    self.taken = conn.exec_driver_sql(
                        "SELECT nextval('tmp_event_properties_id_seq')"
                    ).scalar()
            yield row


@pytest.mark.postgres
def test_a_sized_write_draws_every_id_before_its_first_chunk_and_an_iterator_chunk_by_chunk(postgres_engine):
    """Another writer drawing an id while a write is half done gets one after all of a sized write's
    ids (drawn at once, before the first COPY), but one between an iterator's chunks."""
    sized = RowsBesideAnotherWriter(numbered_rows(2_500), postgres_engine, at=1_500)
    result = write_rows(postgres_engine, tmp_event_properties, sized, max_rows=1_000)
    assert result.inserted_ids == list(range(1, 2_501)) and sized.taken == 2_501

    unsized = RowsBesideAnotherWriter(numbered_rows(2_500), postgres_engine, at=1_500)
    result = write_rows(postgres_engine, tmp_event_properties, iter(unsized), max_rows=1_000)
    assert result.inserted_ids == [*range(2_502, 3_502), *range(3_503, 5_003)] and unsized.taken == 3_502
    assert [row["id"] for row in stored(postgres_engine, tmp_event_properties)] == [
        *range(1, 2_501),
        *range(2_502, 3_502),
        *range(3_503, 5_003),
    ]
