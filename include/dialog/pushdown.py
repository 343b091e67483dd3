"""The pushdown path: a group's conversations built by the MariaDB/MySQL server itself.

When ``dialog_src`` and ``dialog_dst`` are one server reached with one login (:func:`same_server`),
nothing needs to travel through the worker: ``INSERT ... SELECT`` statements on the target connection
read the source database by its qualified name and write the conversations and the rejects. They
follow the streaming path's rules (:mod:`include.dialog.conversation`, :mod:`include.dialog.etl`)
exactly, and the rows they write are identical to that path's:

* the calls read, the ownership test and the speaking order come from the same predicates and the same
  ``ORDER BY created_at, seq, id`` on the same server; the owner's group_code is compared byte for byte,
  as Python compares strings;
* content is stripped of what Python's ``str.strip()`` strips, ``empty_content`` and U+FFFD rejects get
  the same reasons and details, JSON is written as ``json.dumps(ensure_ascii=False)`` writes it;
* insert-ignore on the unique ``call_id`` and on the rejects' (source row, reason), one transaction per
  chunk of calls (``batch_size`` calls or about ``batch_bytes`` of source text), like the streaming
  batches; the counts come from what the server reports it selected and inserted.

What only Python decides falls back to the streaming path for the whole group (before anything is
written, the reason goes into the summary): content bytes that are not UTF-8 (Python's decoder names
the fault in the reject's detail), a content column in another character set, speakers outside ASCII
(Python's case mapping), and call_ids that the column's collation merges but Python tells apart.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys

import sqlalchemy as sa

from include.common.rejects import clip_detail
from include.dialog.conversation import SPEAKER_LABELS, decode_content
from include.dialog.days import day_bounds
from include.dialog.etl import BATCH_BYTES, BATCH_SIZE, CALL_GRACE, GroupResult, load_group

log = logging.getLogger(__name__)

PATHS = ("auto", "streaming")
"""Values of the DAG's ``load_path`` param: ``auto`` pushes down when the servers allow it."""

#: Characters ``str.strip()`` removes, from Python itself so the server strips exactly the same.
_SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
#: The same as MariaDB's ORD() values (the UTF-8 bytes read as one big-endian number): a cheap test
#: of the first and last character before the regular expression runs.
_SPACE_ORDS = ", ".join(str(int.from_bytes(c.encode(), "big")) for c in _SPACES)
_SPACE_CLASS = "[" + "".join(f"\\\\x{{{ord(c):x}}}" for c in _SPACES) + "]"
_FFFD_DETAIL = clip_detail(decode_content("\ufffd")[1].partition(":")[2])
#: JSON_QUOTE writes these control characters' escapes in upper case (\u001F), json.dumps in lower.
_UPPER_HEX_ESCAPES = "[\\\\x{b}\\\\x{e}\\\\x{f}\\\\x{1a}-\\\\x{1f}]"


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _json_string(expr: str) -> str:
    """``expr`` as a JSON string literal, byte for byte what ``json.dumps(..., ensure_ascii=False)``
    writes: JSON_QUOTE, unless a control character whose escape it writes in upper case is present;
    then the escapes are spelled out."""
    spelled = f"REPLACE(REPLACE({expr}, '\\\\', '\\\\\\\\'), '\"', '\\\\\"')"
    for code in range(0x20):
        escape = json.dumps(chr(code))[1:-1]
        spelled = f"REPLACE({spelled}, CHAR({code} USING utf8mb4), {_sql_string(escape)})"
    return f"IF({expr} REGEXP '{_UPPER_HEX_ESCAPES}', CONCAT('\"', {spelled}, '\"'), JSON_QUOTE({expr}))"


def _strip(expr: str) -> str:
    """Python's ``str.strip()`` of a utf8mb4 ``expr``; the expression only runs when the first or last
    character is one it removes."""
    return (
        f"IF(ORD({expr}) IN ({_SPACE_ORDS}) OR ORD(RIGHT({expr}, 1)) IN ({_SPACE_ORDS}),"
        f" REGEXP_REPLACE({expr}, '\\\\A{_SPACE_CLASS}+|{_SPACE_CLASS}+\\\\z', ''), {expr})"
    )


_TEXT = _strip("s.content")
_BYTES = "CAST(s.content AS BINARY)"
#: decode_content's verdict on a row of valid UTF-8: NULL for usable content, else the reason.
_REASON = (
    f"CASE WHEN s.content IS NULL THEN 'empty_content'"
    f" WHEN LOCATE(X'EFBFBD', {_BYTES}) > 0 THEN 'undecodable_text'"
    f" WHEN LENGTH({_TEXT}) = 0 THEN 'empty_content' END"
)
_USABLE = f"s.content IS NOT NULL AND LOCATE(X'EFBFBD', {_BYTES}) = 0 AND LENGTH({_TEXT}) > 0"
#: Bytes Python's UTF-8 decoder refuses: what the server's converter replaces, and the surrogates
#: (ED A0..BF) that MariaDB accepts and Python does not.
_NOT_UTF8 = (
    f"(CAST(CONVERT({_BYTES} USING utf8mb4) AS BINARY) <> {_BYTES}"
    f" OR (LOCATE(X'ED', {_BYTES}) > 0 AND {_BYTES} REGEXP CAST('\\\\xED[\\\\xA0-\\\\xBF]' AS BINARY)))"
)
#: ``(speaker or "unknown").strip().lower()`` for ASCII speakers (others fall back to streaming).
_SPEAKER = (
    "CASE WHEN s.speaker IS NULL OR LENGTH(s.speaker) = 0 THEN 'unknown'"
    " WHEN BINARY s.speaker IN ('customer', 'agent', 'bot') THEN s.speaker"
    f" ELSE LOWER({_strip('s.speaker')}) END"
)
_LABEL = (
    "CASE "
    + " ".join(f"WHEN BINARY sp = {_sql_string(k)} THEN {_sql_string(v)}" for k, v in SPEAKER_LABELS.items())
    + " ELSE sp END"
)


def same_server(source: sa.Engine, target: sa.Engine) -> bool:
    """Whether one connection can do the whole load: both MariaDB/MySQL through mysqlclient (whose
    statement info gives the counts), the same host (as written, case aside: no name resolution),
    port and user, each naming its database. The databases may differ; the target's login reads the
    source's tables, which the same user may."""
    a, b = source.url, target.url
    return (
        source.dialect.name == target.dialect.name == "mysql"
        and source.dialect.driver == target.dialect.driver == "mysqldb"
        and (a.host or "localhost").lower() == (b.host or "localhost").lower()
        and (a.port or 3306) == (b.port or 3306)
        and (a.username or "") == (b.username or "")
        and bool(a.database)
        and bool(b.database)
    )


def choose_path(source: sa.Engine, target: sa.Engine, requested: str = "auto") -> str:
    """``pushdown`` or ``streaming`` for a run: pushdown when asked for ``auto`` and one server does it."""
    if requested not in PATHS:
        raise ValueError(f"load_path must be one of {', '.join(PATHS)}, got {requested!r}")
    return "pushdown" if requested == "auto" and same_server(source, target) else "streaming"


class NotPushableError(Exception):
    """The group holds data only the streaming path handles exactly; nothing was written."""


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _calls_sql(src: str, hint: str) -> str:
    """Every call the group touches on the day, one row each: its first utterance's group_code and time
    (GROUP_CONCAT ... LIMIT 1 in speaking order), its last time, whether the group owns it, its chunk.
    ``needs_python`` marks a call the server cannot assemble exactly; any such call, owned or not,
    sends the group to streaming. Aggregates rather than window functions: a window sort would carry
    every row's content through a temporary table."""
    return f"""
CREATE TEMPORARY TABLE pushdown_calls (KEY (chunk)) AS
SELECT call_id, group_code, first_time, last_time, owned, needs_python,
       GREATEST(FLOOR((ROW_NUMBER() OVER (ORDER BY call_id) - 1) / %(batch_size)s),
                FLOOR((SUM(text_bytes) OVER (ORDER BY call_id) - text_bytes) / %(batch_bytes)s)) AS chunk
FROM (
  SELECT call_id, group_code, first_time, last_time, text_bytes, needs_python,
         BINARY group_code = BINARY %(group)s AND first_time >= %(start)s AND first_time < %(end)s AS owned
  FROM (
    SELECT s.call_id,
           GROUP_CONCAT(s.group_code ORDER BY s.created_at, s.seq, s.id SEPARATOR '' LIMIT 1) AS group_code,
           MIN(s.created_at) AS first_time,
           MAX(s.created_at) AS last_time,
           SUM(IFNULL(LENGTH(s.content), 0)) AS text_bytes,
           MIN(BINARY s.call_id) <> MAX(BINARY s.call_id)
           OR MAX(LENGTH(s.speaker) <> CHAR_LENGTH(s.speaker) OR {_NOT_UTF8}) AS needs_python
    FROM (SELECT DISTINCT call_id FROM {src}
          WHERE group_code = %(group)s AND created_at >= %(start)s AND created_at < %(end)s
            AND call_id IS NOT NULL AND call_id != '') c
    STRAIGHT_JOIN {src} s{hint} ON s.call_id = c.call_id
    WHERE s.created_at >= %(grace_start)s AND s.created_at < %(grace_end)s
      AND s.group_code IS NOT NULL AND s.group_code != ''
    GROUP BY s.call_id
  ) firsts
) calls
WHERE owned OR needs_python
"""


def _rows_join(src: str, hint: str) -> str:
    return f"""FROM pushdown_calls c
    STRAIGHT_JOIN {src} s{hint} ON s.call_id = c.call_id
    WHERE c.owned AND c.chunk = %(chunk)s
      AND s.created_at >= %(grace_start)s AND s.created_at < %(grace_end)s
      AND s.group_code IS NOT NULL AND s.group_code != ''"""


def _conversations_sql(src: str, dst: str, hint: str) -> str:
    turn = (
        "CONCAT('{\"seq\":', IFNULL(seq, 'null'), ',\"time\":\"', DATE_FORMAT(created_at, '%%Y-%%m-%%d %%H:%%i:%%s'),"
        f' \'","speaker":\', {_json_string("sp")}, \',"group_code":\', {_json_string("row_group")},'
        f" ',\"content\":', {_json_string('text')}, '}}')"
    )
    line = f"CONCAT('[', DATE_FORMAT(created_at, '%%H:%%i:%%s'), '] ', {_LABEL}, ': ', text)"
    return f"""
INSERT IGNORE INTO {dst}.prepared_conversations
  (call_id, group_code, dialog_date, turn_count, turns_json, dialog_text, first_time, last_time,
   etl_run_id, loaded_at)
SELECT call_id, call_group, %(day)s, COUNT(*),
       CONCAT('[', GROUP_CONCAT({turn} ORDER BY created_at, seq, id SEPARATOR ','), ']'),
       GROUP_CONCAT({line} ORDER BY created_at, seq, id SEPARATOR '\\n'),
       first_time, last_time, %(run_id)s, %(now)s
FROM (
  SELECT c.call_id, c.group_code AS call_group, c.first_time, c.last_time,
         s.id, s.seq, s.created_at, s.group_code AS row_group, {_SPEAKER} AS sp, {_TEXT} AS text
  {_rows_join(src, hint)}
    AND {_USABLE}
) turns
GROUP BY call_id
"""


def _rejects_sql(src: str, dst: str, hint: str) -> str:
    return f"""
INSERT IGNORE INTO {dst}.prepared_conversation_rejects
  (source_id, call_id, group_code, dialog_date, reason, detail, etl_run_id, rejected_at)
SELECT id, call_id, group_code, %(day)s, reason,
       IF(reason = 'undecodable_text', {_sql_string(_FFFD_DETAIL)}, NULL), %(run_id)s, %(now)s
FROM (
  SELECT s.id, s.call_id, s.group_code, {_REASON} AS reason
  {_rows_join(src, hint)}
) candidates
WHERE reason IS NOT NULL
"""


_INFO = re.compile(r"Records:\s*(\d+)")


def _selected(conn: sa.Connection) -> int:
    """Rows the last ``INSERT ... SELECT`` selected, from the server's statement info."""
    info = conn.connection.dbapi_connection.info() or ""
    match = _INFO.search(info.decode() if isinstance(info, bytes) else info)
    return int(match.group(1)) if match else 0


def _call_index_hint(conn: sa.Connection, database: str) -> str:
    """``FORCE INDEX`` for the source's index led by call_id (``ix_pcd_call_created`` in the
    pipeline's schema), if it has one. Without statistics (a table nobody has analyzed) the optimizer
    takes call_id for nearly unique-less and scans the whole table once per group instead of
    looking each call up, as the streaming path's short IN lists avoid too."""
    name = conn.exec_driver_sql(
        "SELECT index_name FROM information_schema.statistics WHERE table_schema = %s"
        " AND table_name = 'people_customer_dialog' AND column_name = 'call_id' AND seq_in_index = 1"
        " ORDER BY index_name LIMIT 1",
        (database,),
    ).scalar()
    return f" FORCE INDEX ({_q(name)})" if name else ""


def _content_charset(conn: sa.Connection, database: str) -> str:
    return conn.exec_driver_sql(
        "SELECT character_set_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = 'people_customer_dialog' AND column_name = 'content'",
        (database,),
    ).scalar()


def load_group_pushdown(
    source: sa.Engine,
    target: sa.Engine,
    day: dt.date,
    group_code: str,
    run_id: str,
    batch_size: int = BATCH_SIZE,
    batch_bytes: int = BATCH_BYTES,
) -> GroupResult:
    """Load ``group_code``'s conversations of ``day`` on the server; raise :class:`NotPushableError`
    (nothing written) when the group holds data only the streaming path handles exactly."""
    src, dst = f"{_q(source.url.database)}.people_customer_dialog", _q(target.url.database)
    start, end = day_bounds(day)
    params = {
        "group": group_code,
        "start": start,
        "end": end,
        "grace_start": start - CALL_GRACE,
        "grace_end": end + CALL_GRACE,
        "batch_size": batch_size,
        "batch_bytes": batch_bytes,
        "day": day,
        "run_id": run_id,
    }
    result = GroupResult(group_code, path="pushdown")
    with target.connect() as conn:
        charset = _content_charset(conn, source.url.database)
        if charset not in ("utf8mb4", "utf8mb3", "utf8"):
            raise NotPushableError(f"content column is {charset}, not UTF-8: decoded in Python")
        hint = _call_index_hint(conn, source.url.database)
        # No turn list cut short (the LONGTEXT column's own bound), and the statements' backslash
        # escapes read as written whatever the server's default sql_mode.
        conn.exec_driver_sql("SET SESSION group_concat_max_len = 4294967295")
        conn.exec_driver_sql("SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')")
        # Consistent reads of the source: an INSERT ... SELECT under REPEATABLE READ would lock the
        # rows it reads and hold up the source's writers.
        conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        conn.exec_driver_sql("DROP TEMPORARY TABLE IF EXISTS pushdown_calls")
        try:
            conn.exec_driver_sql(_calls_sql(src, hint), params)
            chunks, needs_python = conn.exec_driver_sql(
                "SELECT MAX(chunk), MAX(needs_python) FROM pushdown_calls"
            ).one()
            conn.commit()
            if needs_python:
                raise NotPushableError(
                    "content that is not UTF-8, a speaker outside ASCII or call_ids the collation merges"
                )
            conversations_sql, rejects_sql = _conversations_sql(src, dst, hint), _rejects_sql(src, dst, hint)
            for chunk in range(int(chunks) + 1 if chunks is not None else 0):
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                with conn.begin():
                    inserted = conn.exec_driver_sql(conversations_sql, {**params, "chunk": chunk, "now": now})
                    result.inserted += inserted.rowcount
                    selected = _selected(conn)
                    result.conversations += selected
                    result.skipped_existing += selected - inserted.rowcount
                    conn.exec_driver_sql(rejects_sql, {**params, "chunk": chunk, "now": now})
                    result.rejected += _selected(conn)
        finally:
            conn.rollback()
            conn.exec_driver_sql("DROP TEMPORARY TABLE IF EXISTS pushdown_calls")
    log.info("group %s on %s (pushdown): %s", group_code, day, result)
    return result


def load_group_on(
    path: str,
    source: sa.Engine,
    target: sa.Engine,
    day: dt.date,
    group_code: str,
    run_id: str,
    batch_size: int = BATCH_SIZE,
    batch_bytes: int = BATCH_BYTES,
) -> GroupResult:
    """Load one group on ``path`` (from :func:`choose_path`); a group that cannot be pushed down is
    streamed, and its result says why."""
    if path == "pushdown":
        try:
            return load_group_pushdown(source, target, day, group_code, run_id, batch_size, batch_bytes)
        except NotPushableError as reason:
            log.warning("group %s on %s: streaming instead of pushdown: %s", group_code, day, reason)
            result = load_group(source, target, day, group_code, run_id, batch_size, batch_bytes)
            result.fallback = str(reason)
            return result
    return load_group(source, target, day, group_code, run_id, batch_size, batch_bytes)
