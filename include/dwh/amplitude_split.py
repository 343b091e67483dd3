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
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from include.dwh import schema

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
    table.name: tuple((c.name, c.info.get("source", c.name)) for c in schema.writable_columns(table))
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


def _has_object(event: Mapping[str, Any], field: str) -> bool:
    value = event.get(field)
    return isinstance(value, dict) and bool(value)


def _feeds(table: sa.Table, event: Mapping[str, Any]) -> bool:
    name = table.name
    if name in ("events_part", "technical_data"):
        return True
    if name == "permanent_user_properties":
        return event.get("amplitude_id") is not None
    if name == "mobile_devices":
        return event.get("platform") in MOBILE_PLATFORMS and bool(event.get("device_id"))
    if name == "tmp_event_properties":
        return _has_object(event, "event_properties")
    if name == "tmp_user_properties":
        return _has_object(event, "user_properties")
    if name == "user_locations":
        return any(event.get(field) not in (None, "") for field in LOCATION_FIELDS)
    raise ValueError(f"{name} is not one of the DWH tables fed by Amplitude")


def _row(table: sa.Table, event: Mapping[str, Any]) -> dict[str, Any]:
    """Same as ``schema.row_from_event(table, event)``, with the column pairs looked up once (and the
    lookups done by ``map`` and ``zip`` in C: this runs seven times per event)."""
    columns, fields = _COLUMNS_FIELDS[table.name]
    return dict(zip(columns, map(event.get, fields), strict=True))


def split_event(event: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The rows ``event`` gives, keyed by table name (tables it has nothing for are absent)."""
    return {table.name: _row(table, event) for table in TABLES if _feeds(table, event)}


def rows_for(table: sa.Table, events: Iterator[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The rows of ``table`` from a stream of events, in event order."""
    for event in events:
        if _feeds(table, event):
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


def iter_archive_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every event of a merged week archive (one ``.ndjson`` entry), streamed: one line at a time in
    memory, whatever the archive's size. Blank lines are skipped."""
    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        if len(names) != 1 or not names[0].endswith(".ndjson"):
            raise EventFormatError(f"{path.name}: expected one .ndjson entry, found {names}")
        with archive.open(names[0]) as raw, io.BufferedReader(raw, READ_BUFFER) as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield parse_line(line, number)
