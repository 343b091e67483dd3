"""How one Amplitude export event becomes rows of the seven DWH tables, and the stream of events
read from a week's archive.

The column mapping itself lives on the columns (:func:`include.dwh.schema.row_from_event`: the
export's field of the same name, or ``info["source"]``). What this module adds is *which* tables an
event feeds, because not every event has something for every table:

=============================  ========================================================================
table                          an event has a row there when
=============================  ========================================================================
``events_part``                always (one row per event)
``technical_data``             always (``$insert_id``, ``$schema``, upload/processing times, SDK)
``permanent_user_properties``  it has an ``amplitude_id`` (the table's key; every export event has one)
``mobile_devices``             its ``platform`` is iOS or Android and it has a ``device_id``
``tmp_event_properties``       its ``event_properties`` is a non-empty object
``tmp_user_properties``        its ``user_properties`` is a non-empty object
``user_locations``             it carries any of country, region, city, dma, latitude, longitude, IP
=============================  ========================================================================

Export fields that no table keeps: ``adid``/``idfa`` outside mobile events, ``groups``,
``group_properties``, ``global_user_properties``, ``plan``, ``partner_id``, ``source_id``,
``data_type``, ``amplitude_attribution_ids``. An event that is not a JSON object, or lacks ``uuid``,
is an error naming its line: the export is Amplitude's own, so a bad line means a broken archive.

:class:`EventSplitter` is how a load reads the lines: each event is decoded once by msgspec into a
struct typed after the strictest rule of each field's columns (type, length, integer range), so the
values of all its rows are checked in C while the line is decoded, and its rows come out as
:class:`~include.dwh.batch_writer.CheckedRow` (the validator's conversions applied), which the
writer only sizes. Decoding each line with the standard library and checking each of its seven
rows field by field took most of a load's time. Whatever that struct refuses (a value of another
type, too long, out of range, absent where required, text with NUL, a line that is not UTF-8 or
that the standard library decodes differently: see :mod:`include.dwh.json_rows`) goes the standard
way instead, :func:`parse_line` then :func:`split_event`, whose rows the writer checks field by
field: so rows, errors and their messages are the same either way.
"""

from __future__ import annotations

import io
import json
import operator
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from include.dwh import schema
from include.dwh.batch_writer import CheckedRow
from include.dwh.json_rows import struct_field
from include.dwh.validation import ColumnRule, RowValidator, column_rules

#: The tables in load order, by name.
TABLES: tuple[sa.Table, ...] = (
    schema.events_part,
    schema.mobile_devices,
    schema.permanent_user_properties,
    schema.technical_data,
    schema.tmp_event_properties,
    schema.tmp_user_properties,
    schema.user_locations,
)
#: Table name -> (column, export field) pairs, read once from :func:`include.dwh.schema.row_from_event`'s
#: rule (``info["source"]`` or the column's own name): the per-event work is then one dict lookup each.
_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    table.name: tuple(
        (str(c.name), str(c.info.get("source", c.name)))  # plain strings, not quoted_name: msgspec wants them
        for c in schema.writable_columns(table)
    )
    for table in TABLES
}
_COLUMNS_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (tuple(column for column, _ in pairs), tuple(field for _, field in pairs))
    for name, pairs in _FIELDS.items()
}
MOBILE_PLATFORMS = frozenset({"iOS", "Android"})
LOCATION_FIELDS = ("country", "region", "city", "dma", "location_lat", "location_lng", "ip_address")
READ_BUFFER = 1 << 20


class EventFormatError(ValueError):
    """A line of the export that is not an Amplitude event."""


def _has_object(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


#: Table name -> whether an event has a row there, given a function returning the event's fields
#: (``None`` when absent).
_FEEDS: dict[str, Callable[[Callable[[str], Any]], bool]] = {
    "events_part": lambda get: True,
    "mobile_devices": lambda get: get("platform") in MOBILE_PLATFORMS and bool(get("device_id")),
    "permanent_user_properties": lambda get: get("amplitude_id") is not None,
    "technical_data": lambda get: True,
    "tmp_event_properties": lambda get: _has_object(get("event_properties")),
    "tmp_user_properties": lambda get: _has_object(get("user_properties")),
    "user_locations": lambda get: any(get(field) not in (None, "") for field in LOCATION_FIELDS),
}


def _row(table: sa.Table, event: Mapping[str, Any]) -> dict[str, Any]:
    """Same as ``schema.row_from_event(table, event)``, with the column pairs looked up once (and the
    lookups done by ``map`` and ``zip`` in C: this runs seven times per event)."""
    columns, fields = _COLUMNS_FIELDS[table.name]
    return dict(zip(columns, map(event.get, fields), strict=True))


def split_event(event: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The rows ``event`` gives, keyed by table name (tables it has nothing for are absent)."""
    return {table.name: _row(table, event) for table in TABLES if _FEEDS[table.name](event.get)}


def rows_for(table: sa.Table, events: Iterator[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The rows of ``table`` from a stream of events, in event order."""
    feeds = _FEEDS[table.name]
    for event in events:
        if feeds(event.get):
            yield _row(table, event)


def parse_line(line: bytes, number: int) -> dict[str, Any]:
    """One NDJSON line as an event; ``number`` (1-based) is named in errors."""
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise EventFormatError(f"line {number} is not JSON ({exc})") from None
    if not isinstance(event, dict):
        raise EventFormatError(f"line {number} is not a JSON object")
    if not event.get("uuid"):
        raise EventFormatError(f"line {number} has no uuid")
    return event


def iter_archive_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Every non-blank line of a merged week archive (one ``.ndjson`` entry) with its number
    (1-based), streamed: one line at a time in memory, whatever the archive's size."""
    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        if len(names) != 1 or not names[0].endswith(".ndjson"):
            raise EventFormatError(f"{path.name}: expected one .ndjson entry, found {names}")
        with archive.open(names[0]) as raw, io.BufferedReader(raw, READ_BUFFER) as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield number, line


def iter_archive_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every event of a merged week archive, parsed (see :func:`iter_archive_lines`)."""
    for number, line in iter_archive_lines(path):
        yield parse_line(line, number)


def _strictest(field: str, rules: list[ColumnRule]) -> ColumnRule:
    """One export field's rule for the struct: what every column it feeds accepts (never required:
    which rows an event has decides that), so that a value the struct accepts is valid in each."""
    kinds = {rule.kind for rule in rules}
    if len(kinds) != 1:
        raise TypeError(f"export field {field!r} feeds columns of kinds {sorted(kinds)}")
    lengths = [rule.max_length for rule in rules if rule.max_length is not None]
    lows = [rule.min_value for rule in rules if rule.min_value is not None]
    highs = [rule.max_value for rule in rules if rule.max_value is not None]
    return ColumnRule(
        field,
        kinds.pop(),
        required=False,
        max_length=min(lengths, default=None),
        min_value=max(lows, default=None),
        max_value=min(highs, default=None),
    )


def _event_struct() -> tuple[type[msgspec.Struct], dict[str, ColumnRule]]:
    """The struct an export line is decoded into (attributes named after the fields, but for the
    ones that are no identifiers, named after their column) and the rule of each of its fields, in
    the order of :func:`msgspec.structs.astuple`."""
    column_rules_of: dict[str, list[ColumnRule]] = {}
    attributes: dict[str, str] = {}
    for table in TABLES:
        for column, field in _FIELDS[table.name]:
            column_rules_of.setdefault(field, []).append(column_rules(table)[column])
            attributes.setdefault(field, field if field.isidentifier() else column)
    rules = {field: _strictest(field, of_field) for field, of_field in column_rules_of.items()}
    struct = msgspec.defstruct(
        "AmplitudeEvent",
        [(attributes[name], *rest) for name, *rest in map(struct_field, rules.values())],
        rename={attribute: field for field, attribute in attributes.items()},
        kw_only=True,
        gc=False,  # decoded JSON holds no reference cycles
    )
    return struct, rules


class EventSplitter:
    """Splits export lines into rows for :func:`include.dwh.batch_writer.write_rows` (see module):
    ``CheckedRow`` s, converted as the writer converts them for its engine (``timestamps_as_text``:
    :func:`include.dwh.batch_writer.timestamps_as_text`), or, for an event the typed decoding refuses, the mappings of :func:`split_event`.

    An event's timestamps and JSON objects are converted once, by a validator of the event's own
    fields, whichever tables they go to (``event_time`` goes to six); each table's validator then
    measures its row."""

    def __init__(self, *, timestamps_as_text: bool) -> None:
        struct, rules = _event_struct()
        self._decode = msgspec.json.Decoder(struct).decode
        self._convert = RowValidator(rules, timestamps_as_text=timestamps_as_text).convert_objects
        position = {field: i for i, field in enumerate(rules)}
        self._uuid = position["uuid"]
        self._tables: list[tuple[str, Callable, Callable, tuple[int, ...], Callable]] = []
        for table in TABLES:
            columns, fields = _COLUMNS_FIELDS[table.name]
            table_rules = column_rules(table)
            required = tuple(i for i, column in enumerate(columns) if table_rules[column].required)
            pick = operator.itemgetter(*(position[field] for field in fields))
            measure = RowValidator(table, timestamps_as_text=timestamps_as_text).measure
            self._tables.append((table.name, _FEEDS[table.name], pick, required, measure))

    def split(self, line: bytes, number: int) -> dict[str, Any]:
        """The rows the event on line ``number`` gives, keyed by table name; raises
        :class:`EventFormatError` for a line that is no event."""
        rows = self._checked_rows(line)
        return rows if rows is not None else split_event(parse_line(line, number))

    def _checked_rows(self, line: bytes) -> dict[str, CheckedRow] | None:
        """The event's rows, checked; ``None`` when any of them is not valid, or the line is not
        decoded the way :func:`parse_line` decodes it (msgspec does not check the UTF-8 of the
        fields it skips, the standard library does)."""
        if not line.isascii():
            try:
                line.decode()
            except UnicodeDecodeError:
                return None
        try:
            event = self._decode(line)
        except (msgspec.MsgspecError, RecursionError):
            return None
        values = list(msgspec.structs.astuple(event))
        if not values[self._uuid]:
            return None
        get = event.__getattribute__  # the feed rules read the struct before values are converted
        rows: dict[str, CheckedRow] = {}
        feeding = [table for table in self._tables if table[1](get)]
        if not self._convert(values):
            return None
        for name, _feeds, pick, required, measure in feeding:
            row = list(pick(values))
            for i in required:
                if row[i] is None:
                    return None
            checked = measure(row)
            if checked is None:
                return None
            rows[name] = CheckedRow(*checked)
        return rows
