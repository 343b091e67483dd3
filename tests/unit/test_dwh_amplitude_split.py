"""The Amplitude event -> seven DWH tables mapping, and idempotent loads through the load log (SQLite,
and PostgreSQL where its writes take another path)."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
import sqlalchemy as sa

from include.dwh import schema
from include.dwh.amplitude_split import (
    EventFormatError,
    EventSplitter,
    iter_archive_events,
    parse_line,
    rows_for,
    split_event,
)
from include.dwh.batch_writer import CheckedRow
from include.dwh.exports import (
    LoadKey,
    ensure_load_log,
    id_ranges,
    loads_of,
    replace_period,
    replace_periods,
    table_fingerprint,
)
from include.dwh.validation import RowValidator, ValidationError

EVENT = {
    "$insert_id": "ins-1",
    "$schema": 12,
    "adid": "ad-1",
    "amplitude_id": 12345,
    "app": 400000,
    "city": "Sao Paulo",
    "client_event_time": "2024-02-05 10:00:00.000000",
    "client_upload_time": "2024-02-05 10:00:01.000000",
    "country": "Brazil",
    "data": {"path": "/2/httpapi"},
    "device_brand": "Samsung",
    "device_carrier": "Vivo",
    "device_id": "dev-1",
    "event_id": 7,
    "event_properties": {"page_path": "/home"},
    "event_time": "2024-02-05 10:00:00.000000",
    "event_type": "page_view",
    "groups": {},
    "ip_address": "10.0.0.1",
    "library": "amplitude-android/1.12.2",
    "platform": "Android",
    "server_upload_time": "2024-02-05 10:00:02.000000",
    "session_id": 1707127200000,
    "user_id": "u-1",
    "user_properties": {"plan": "gold"},
    "uuid": "6f1c1c9e-1111-4222-8333-444455556666",
}
TABLE_BY_NAME = {table.name: table for table in schema.TABLES.values()}


def test_a_mobile_event_feeds_all_seven_tables_with_renamed_fields():
    rows = split_event(EVENT)
    assert set(rows) == {table.name for table in schema.TABLES.values()}
    assert rows["mobile_devices"]["carrier"] == "Vivo"
    assert rows["technical_data"]["insert_id"] == "ins-1" and rows["technical_data"]["schema_version"] == 12
    assert rows["tmp_event_properties"]["event_properties"] == {"page_path": "/home"}
    assert rows["user_locations"]["city"] == "Sao Paulo"
    assert all(row["uuid"] == EVENT["uuid"] for row in rows.values())
    assert "id" not in rows["events_part"] and "loaded_at" not in rows["events_part"]
    for table in schema.TABLES.values():
        assert rows[table.name] == schema.row_from_event(table, EVENT)  # the schema's one mapping


def test_a_web_event_without_properties_or_location_feeds_only_its_tables():
    event = {**EVENT, "platform": "Web", "event_properties": {}, "user_properties": None}
    for field in ("city", "country", "ip_address"):
        event.pop(field)
    assert set(split_event(event)) == {"events_part", "technical_data", "permanent_user_properties"}
    event.pop("amplitude_id")
    assert set(split_event(event)) == {"events_part", "technical_data"}


def test_rows_for_one_table_streams_in_event_order():
    events = [{**EVENT, "uuid": f"u{n}", "platform": "Web" if n % 2 else "iOS"} for n in range(5)]
    assert [row["uuid"] for row in rows_for(schema.mobile_devices, iter(events))] == ["u0", "u2", "u4"]


def write_archive(path, lines: list[bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("2024_week_6.ndjson", b"".join(lines))
    return path


def test_archive_events_are_read_line_by_line_and_bad_lines_are_named(tmp_path):
    good = json.dumps(EVENT).encode() + b"\n"
    archive = write_archive(tmp_path / "ok.zip", [good, b"\n", good])
    assert [e["uuid"] for e in iter_archive_events(archive)] == [EVENT["uuid"]] * 2
    with pytest.raises(EventFormatError, match="line 2 is not JSON"):
        list(iter_archive_events(write_archive(tmp_path / "bad.zip", [good, b"{oops\n"])))
    with pytest.raises(EventFormatError, match="line 1 has no uuid"):
        list(iter_archive_events(write_archive(tmp_path / "nouuid.zip", [b'{"a": 1}\n'])))


def test_id_ranges():
    assert id_ranges([7, 1, 3, 2]) == [[1, 3], [7, 7]]
    assert id_ranges([]) == []


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dwh.sqlite'}")
    ensure_load_log(engine)
    ensure_load_log(engine)  # re-runnable
    return engine


def events(count: int, tag: str = "") -> list[dict]:
    return [
        {**EVENT, "uuid": f"{tag}{n:08d}-0000-4000-8000-000000000000"[:36], "event_id": n}
        for n in range(count)
    ]


def test_replace_period_replaces_its_own_rows_only(engine):
    week6 = LoadKey("amplitude", "web", "2024-W06")
    other = LoadKey("amplitude", "mobile", "2024-W06")
    table = schema.events_part
    replace_period(engine, table, other, rows_for(table, iter(events(3, "m"))))
    first = replace_period(engine, table, week6, rows_for(table, iter(events(10))), max_rows=4)
    before = table_fingerprint(engine, table)
    again = replace_period(engine, table, week6, rows_for(table, iter(events(10))), max_rows=4)
    assert (first.rows, first.replaced, again.rows, again.replaced) == (10, 0, 10, 10)
    assert table_fingerprint(engine, table) == before and before[0] == 13
    [log] = list(loads_of(engine, week6))
    assert log["rows"] == 10 and json.loads(log["id_ranges"]) == [[4, 13]]  # SQLite reuses the freed ids


def test_a_failed_reload_leaves_the_previous_load(engine):
    key = LoadKey("amplitude", "web", "2024-W06")
    table = schema.events_part
    replace_period(engine, table, key, rows_for(table, iter(events(5))))
    before = table_fingerprint(engine, table)
    broken = [*events(3), {**EVENT, "event_type": None}]
    with pytest.raises(ValidationError):
        replace_period(engine, table, key, rows_for(table, iter(broken)), max_rows=1)
    assert table_fingerprint(engine, table) == before
    assert [row["rows"] for row in loads_of(engine, key)] == [5]


def test_a_load_that_fails_in_a_later_table_leaves_every_table_as_it_was(engine):
    """The tables of one load are replaced in one transaction: rows already written to the first table
    go too when a later table's row is invalid, and the load log keeps the previous load."""
    key = LoadKey("amplitude", "web", "2024-W06")
    tables = [schema.technical_data, schema.events_part]
    replace_periods(engine, key, tables, (split_event(event) for event in events(6)), max_rows=2)
    before = [table_fingerprint(engine, table) for table in tables]
    broken = [*events(6), {**EVENT, "uuid": "x" * 36, "event_type": None}]
    with pytest.raises(ValidationError):
        replace_periods(engine, key, tables, (split_event(event) for event in broken), max_rows=2)
    assert [table_fingerprint(engine, table) for table in tables] == before and before[1][0] == 6
    assert sorted((row["table_name"], row["rows"]) for row in loads_of(engine, key)) == [
        ("events_part", 6),
        ("technical_data", 6),
    ]


@pytest.fixture
def pg_engine(postgres_conn):
    from include.common.db import engine_for

    engine = engine_for(postgres_conn("dwh_db"))
    assert engine.dialect.driver == "psycopg"
    ensure_load_log(engine)
    yield engine
    engine.dispose()


def _ids_in_input_order(engine, table) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table.c.id).order_by(table.c.uuid)).scalars())


@pytest.mark.postgres
def test_batches_copied_by_the_writer_thread_take_ids_in_input_order_on_postgresql(pg_engine):
    """With psycopg, each batch is formatted into a COPY block here and copied by the writer thread in
    the load's transaction: ids rise with the input, another writer's id taken between two batches
    goes to nobody else, and the load log's ranges are exactly the rows' ids, run after run."""
    key = LoadKey("amplitude", "web", "2024-W06")
    tables = [schema.events_part, schema.technical_data]
    sequence = "events_part_id_seq"
    taken: list[int] = []

    def split_with_another_writer():
        for n, event in enumerate(events(11)):
            if n == 5:  # after the second batch of 2 events and, with max_rows 2, its COPY block
                with pg_engine.begin() as other:
                    taken.append(other.execute(sa.text(f"SELECT nextval('{sequence}')")).scalar_one())
            yield split_event(event)

    for run in range(2):
        loads = replace_periods(pg_engine, key, tables, split_with_another_writer(), max_rows=2)
        assert [(load.rows, load.replaced) for load in loads] == [(11, 11 * run)] * 2
        ids = _ids_in_input_order(pg_engine, schema.events_part)
        assert ids == sorted(ids) and len(set(ids)) == 11 and taken[-1] not in ids
        assert ids[0] < taken[-1] < ids[-1]
        logged = {row["table_name"]: json.loads(row["id_ranges"]) for row in loads_of(pg_engine, key)}
        assert [i for first, last in logged["events_part"] for i in range(first, last + 1)] == ids
        technical = _ids_in_input_order(pg_engine, schema.technical_data)
        assert technical == [i for first, last in logged["technical_data"] for i in range(first, last + 1)]
    assert [table_fingerprint(pg_engine, table)[0] for table in tables] == [11, 11]


@pytest.mark.postgres
def test_a_failed_reload_on_postgresql_leaves_every_table_and_the_log_as_they_were(pg_engine):
    """Blocks copied before the failure go with it: a row the server refuses (a CHECK constraint the
    validator does not know) in a later batch of the second table, and an invalid row after several
    batches were copied, each leave both tables and the load log as the previous load left them; the
    engine's connections then load again."""
    import psycopg

    key = LoadKey("amplitude", "web", "2024-W06")
    tables = [schema.events_part, schema.technical_data]
    replace_periods(pg_engine, key, tables, (split_event(e) for e in events(6)), max_rows=2)
    before = [table_fingerprint(pg_engine, table) for table in tables]
    logged = sorted((row["table_name"], row["id_ranges"]) for row in loads_of(pg_engine, key))
    with pg_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE technical_data ADD CHECK (uuid NOT LIKE 'refused%')"))

    refused = [*events(7), *events(1, "refused")]
    with pytest.raises(psycopg.errors.CheckViolation):
        replace_periods(pg_engine, key, tables, (split_event(e) for e in refused), max_rows=2)
    invalid = [*events(9), {**EVENT, "uuid": "y" * 36, "event_type": None}]
    with pytest.raises(ValidationError, match="field 'event_type': is required"):
        replace_periods(pg_engine, key, tables, (split_event(e) for e in invalid), max_rows=2)

    assert [table_fingerprint(pg_engine, table) for table in tables] == before and before[0][0] == 6
    assert sorted((row["table_name"], row["id_ranges"]) for row in loads_of(pg_engine, key)) == logged
    loads = replace_periods(pg_engine, key, tables, (split_event(e) for e in events(5)), max_rows=2)
    assert [(load.rows, load.replaced) for load in loads] == [(5, 6), (5, 6)]


# ------------------------------------------------------------------------ lines split for a load


def event_line(**changes) -> bytes:
    """EVENT's export line, with fields changed (``...`` removes one)."""
    event = {**EVENT, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}, ensure_ascii=False).encode()


SPLIT_LINES = {
    "mobile event": event_line(),
    "non-ASCII text": event_line(city="São Paulo", event_properties={"título": "ação 😀"}),
    "web event, no properties": event_line(platform="Web", event_properties={}, user_properties=None),
    "no location": event_line(city=..., country=..., ip_address=...),
    "location from a zero coordinate": event_line(city=..., country=..., ip_address=..., location_lat=0),
    "integer coordinates": event_line(location_lat=-23, location_lng=46),
    "timestamp with an offset": event_line(event_time="2024-02-05T12:00:00.5+02:00"),
    "timestamp without a fraction": event_line(client_event_time="2024-02-05 10:00:00"),
    "unkept fields of any shape": event_line(groups={"a": [1, {"b": None}]}, plan=None, source_id=7),
    "duplicate field, the last wins": event_line()[:-1] + b', "event_type": "second"}',
    "blank around the object": b"  " + event_line() + b" \r\n",
    # each of these fails somewhere in the typed decoding, so the event goes the standard way
    "event_type too long": event_line(event_type="x" * 256),
    "event_type missing": event_line(event_type=...),
    "event_time not a timestamp": event_line(event_time="yesterday"),
    "NUL in a string": event_line(city="Sao\x00Paulo"),
    "NUL in a string of a table the event does not feed": event_line(platform="Web", device_brand="\x00"),
    "integer as a float": event_line(amplitude_id=12345.0),
    "integer out of range": event_line(**{"$schema": 2**31}),
    "boolean as a number": event_line(paying=0),
    "properties not an object": event_line(event_properties=["a"]),
    "platform not a string": event_line(platform=7),
    "unpaired surrogate in an unkept field": event_line()[:-1] + b', "plan": "\\ud800"}',
    "unpaired surrogate in a kept field": event_line()[:-1] + b', "city": "\\udc00"}',
    "NaN in a kept object": event_line()[:-1] + b', "data": {"x": NaN}}',
    "surrogate bytes in an unkept field": event_line()[:-1] + b', "plan": "\xed\xa0\x80"}',
    # lines that are no events: the same error either way
    "invalid UTF-8 in an unkept field": event_line()[:-1] + b', "plan": "\xff"}',
    "not JSON": b"{oops",
    "not an object": b"[1, 2]",
    "no uuid": event_line(uuid=""),
    "uuid not a string": event_line(uuid=5),
}


@pytest.mark.parametrize("timestamps_as_text", [False, True], ids=["datetimes", "text"])
@pytest.mark.parametrize("line", SPLIT_LINES.values(), ids=SPLIT_LINES.keys())
def test_split_lines_give_the_rows_and_errors_of_the_standard_path(line, timestamps_as_text):
    """An event the typed decoding accepts gives the rows, converted and sized, that the validator
    makes of :func:`split_event`'s rows; any other line gives :func:`split_event`'s rows (which the
    writer then checks) or :func:`parse_line`'s error."""
    splitter = EventSplitter(timestamps_as_text=timestamps_as_text)
    try:
        expected = split_event(parse_line(line, 3))
    except EventFormatError as exc:
        with pytest.raises(EventFormatError, match=re.escape(str(exc))):
            splitter.split(line, 3)
        return
    rows = splitter.split(line, 3)
    assert list(rows) == list(expected)
    for name, row in rows.items():
        if type(row) is CheckedRow:
            validator = RowValidator(TABLE_BY_NAME[name], timestamps_as_text=timestamps_as_text)
            assert (row.values, row.size) == validator.check_values(0, expected[name])
        else:
            assert row == expected[name]


def test_events_the_tables_accept_are_split_by_the_typed_decoding():
    splitter = EventSplitter(timestamps_as_text=False)
    for name in ("mobile event", "non-ASCII text", "timestamp with an offset", "blank around the object"):
        assert all(type(row) is CheckedRow for row in splitter.split(SPLIT_LINES[name], 1).values()), name
    for name in ("event_type too long", "NUL in a string", "surrogate bytes in an unkept field"):
        assert all(type(row) is dict for row in splitter.split(SPLIT_LINES[name], 1).values()), name


def test_a_bad_row_is_reported_before_a_bad_line_that_follows_it(engine):
    """Batches are written in a thread of their own while the next lines are read; an error still
    comes out as if each batch had been written when it filled up."""

    def split_then_break():
        batch = events(4)
        batch[3] = {**batch[3], "event_type": None}
        yield from (split_event(event) for event in batch)  # rows 2 and 3 fill the second batch
        raise EventFormatError("line 5 is not JSON")

    key = LoadKey("amplitude", "web", "2024-W06")
    with pytest.raises(ValidationError, match="row 1, field 'event_type': is required"):
        replace_periods(engine, key, [schema.events_part], split_then_break(), max_rows=2)
    assert table_fingerprint(engine, schema.events_part)[0] == 0
    with pytest.raises(EventFormatError):  # with no bad row before it, the line's error
        replace_periods(engine, key, [schema.events_part], split_then_break(), max_rows=5)
