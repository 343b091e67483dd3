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
  chunk of calls (``batch_size`` calls or about ``batch_bytes`` of conversation text), like the
  streaming batches; the counts come from what the server reports it selected and inserted.

Each call's rows are read once: the group's calls come from
the (group_code, created_at, call_id) index alone, then one statement walks them in call_id order,
decides each call's owner and builds its conversation in the same aggregation, into a temporary
table; the chunks are copied from there. Only calls holding rejected rows are read a second time,
for those rows.

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


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _strip_always(expr: str) -> str:
    return f"REGEXP_REPLACE({expr}, '\\\\A{_SPACE_CLASS}+|{_SPACE_CLASS}+\\\\z', '')"


def _starts_or_ends_with_space(expr: str, also: str = "") -> str:
    return f"ORD({expr}) IN ({also}{_SPACE_ORDS}) OR ORD(RIGHT({expr}, 1)) IN ({_SPACE_ORDS})"


def _strip(expr: str) -> str:
    """Python's ``str.strip()`` of a utf8mb4 ``expr``; the regular expression only runs when the first
    or last character is one it removes."""
    return f"IF({_starts_or_ends_with_space(expr)}, {_strip_always(expr)}, {expr})"


_BYTES = "CAST(s.content AS BINARY)"
#: The stripped content of a usable row, NULL for a rejected one (decode_content's verdict on valid
#: UTF-8), which GROUP_CONCAT skips. Evaluated twice a row (turn and line), so the usual
#: row (nothing to strip, not empty) costs one test; NULLIF, which evaluates its argument twice, is
#: left for content that ends or starts with a space, or is empty (ORD 0: NUL or nothing).
_TEXT = (
    f"CASE WHEN LOCATE(X'EFBFBD', {_BYTES}) > 0 THEN NULL"
    f" WHEN {_starts_or_ends_with_space('s.content', also='0, ')}"
    f" THEN NULLIF({_strip_always('s.content')}, '') ELSE s.content END"
)
#: decode_content's reason for a rejected row of valid UTF-8, NULL for a usable one.
_REASON = (
    f"CASE WHEN s.content IS NULL THEN 'empty_content'"
    f" WHEN LOCATE(X'EFBFBD', {_BYTES}) > 0 THEN 'undecodable_text'"
    f" WHEN LENGTH({_strip('s.content')}) = 0 THEN 'empty_content' END"
)
#: Bytes Python's UTF-8 decoder refuses: what the server's converter replaces, and the surrogates
#: (ED A0..BF) that MariaDB accepts and Python does not.
_NOT_UTF8 = (
    f"(CAST(CONVERT({_BYTES} USING utf8mb4) AS BINARY) <> {_BYTES}"
    f" OR (LOCATE(X'ED', {_BYTES}) > 0 AND {_BYTES} REGEXP CAST('\\\\xED[\\\\xA0-\\\\xBF]' AS BINARY)))"
)
#: ``(speaker or "unknown").strip().lower()`` for ASCII speakers (others fall back to streaming).
_SPEAKER = (
    "CASE WHEN s.speaker IS NULL OR LENGTH(s.speaker) = 0 THEN 'unknown'"
    f" WHEN BINARY s.speaker IN ({', '.join(map(_sql_string, SPEAKER_LABELS))}) THEN s.speaker"
    f" ELSE LOWER({_strip('s.speaker')}) END"
)


def _labelled(operand: str, otherwise: str) -> str:
    whens = " ".join(f"WHEN {_sql_string(k)} THEN {_sql_string(v)}" for k, v in SPEAKER_LABELS.items())
    return f"CASE BINARY {operand} {whens} ELSE {otherwise} END"


#: The speaker's label in dialog_text; a speaker already written as a known one is looked up once.
_LABEL = _labelled("s.speaker", _labelled(f"({_SPEAKER})", f"({_SPEAKER})"))
#: The speaker as a JSON string; the usual, known speakers are constants.
_SPEAKER_JSON = (
    "CASE BINARY s.speaker "
    + " ".join(f"WHEN {_sql_string(k)} THEN {_sql_string(json.dumps(k))}" for k in SPEAKER_LABELS)
    + f" ELSE JSON_QUOTE({_SPEAKER}) END"
)
#: A turn as ``json.dumps`` writes it, but for JSON_QUOTE's upper-case escapes (see _python_escapes).
_TURN = (
    "CONCAT('{\"seq\":', IFNULL(s.seq, 'null'), ',\"time\":\"', DATE_FORMAT(s.created_at, '%%Y-%%m-%%d %%H:%%i:%%s'),"
    f' \'","speaker":\', {_SPEAKER_JSON}, \',"group_code":\', JSON_QUOTE(s.group_code),'
    f" ',\"content\":', JSON_QUOTE({_TEXT}), '}}')"
)
_LINE = f"CONCAT('[', DATE_FORMAT(s.created_at, '%%H:%%i:%%s'), '] ', {_LABEL}, ': ', {_TEXT})"
_ORDER = "ORDER BY s.created_at, s.seq, s.id"


def _python_escapes(expr: str) -> str:
    """``expr`` (JSON written with JSON_QUOTE) with the escapes JSON_QUOTE writes in upper case
    (``\\u001F``) in lower case, as ``json.dumps`` writes them. An escape is a backslash that is not
    itself escaped: one preceded by an even run of backslashes. Rare, so looked for once per call."""
    fixed = expr
    for code in (0x0B, 0x0E, 0x0F, *range(0x1A, 0x20)):
        upper = f"{code:04X}"
        fixed = (
            f"REGEXP_REPLACE({fixed}, '(?-i)(?<!\\\\\\\\)((?:\\\\\\\\\\\\\\\\)*)\\\\\\\\u{upper}',"
            f" '\\\\1\\\\\\\\u{upper.lower()}')"
        )
    return f"IF(INSTR(BINARY {expr}, '\\\\u00') > 0, {fixed}, {expr})"


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


def _calls_sql(src: str) -> str:
    """The calls the group touches on the day, from the (group_code, created_at, call_id) index alone.
    Clustered by call_id (InnoDB: no size bound, unlike a MEMORY table), they let the next statement
    walk them in order and group each call's rows as they come, with no temporary table or sort over
    the rows. Equal call_ids under the column's collation are one row here, as they are one group
    there (where ``needs_python`` catches them)."""
    return f"""
CREATE TEMPORARY TABLE pushdown_calls (PRIMARY KEY (call_id)) ENGINE=InnoDB
SELECT DISTINCT call_id FROM {src}
WHERE group_code = %(group)s AND created_at >= %(start)s AND created_at < %(end)s
  AND call_id IS NOT NULL AND call_id != ''
"""


def _assembled_sql(src: str, hint: str) -> str:
    """The one read of the calls' rows: each call's owner (the first utterance's group_code and time,
    GROUP_CONCAT ... LIMIT 1 in speaking order), its conversation built from the usable rows, its row
    count and ``needs_python``, which marks a call the server cannot assemble exactly (one of its rows
    differs from the call's call_id in bytes: the collation merged them). Only the calls the group
    owns are kept, and any call marked, owned or not, which sends the whole group to streaming.
    ``n`` numbers the calls in the order the chunks take them. Every aggregate costs per row, so what
    can be had per call afterwards is left out (the turn count, the text size)."""
    return f"""
CREATE TEMPORARY TABLE pushdown_conversations (n INT UNSIGNED AUTO_INCREMENT PRIMARY KEY)
SELECT c.call_id,
       GROUP_CONCAT(s.group_code {_ORDER} SEPARATOR '' LIMIT 1) AS call_group,
       MIN(s.created_at) AS first_time,
       MAX(s.created_at) AS last_time,
       COUNT(*) AS row_count,
       CONCAT('[', GROUP_CONCAT({_TURN} {_ORDER} SEPARATOR ','), ']') AS turns_json,
       GROUP_CONCAT({_LINE} {_ORDER} SEPARATOR '\\n') AS dialog_text,
       MAX(BINARY s.call_id <> BINARY c.call_id OR LENGTH(s.speaker) <> CHAR_LENGTH(s.speaker)
           OR {_NOT_UTF8}) AS needs_python
FROM pushdown_calls c
STRAIGHT_JOIN {src} s{hint} ON s.call_id = c.call_id
WHERE s.created_at >= %(grace_start)s AND s.created_at < %(grace_end)s
  AND s.group_code IS NOT NULL AND s.group_code != ''
GROUP BY c.call_id
HAVING needs_python
    OR (BINARY call_group = BINARY %(group)s AND first_time >= %(start)s AND first_time < %(end)s)
"""


def _turn_count(turns_json: str) -> str:
    """The number of turns in ``turns_json``: every turn object, and nothing else, starts with
    ``{"seq":`` (a quote inside a JSON string is escaped). 0 for a call without a usable row."""
    return f"IFNULL((LENGTH({turns_json}) - LENGTH(REPLACE({turns_json}, '{{\"seq\":', ''))) DIV 7, 0)"


#: The chunks, as ranges of ``n``: at most ``batch_size`` calls, and a new one once the text written
#: before a call reaches ``batch_bytes``; with the rejected rows each holds.
_CHUNKS_SQL = f"""
SELECT MAX(n), SUM(rejected)
FROM (
  SELECT n, row_count - {_turn_count("turns_json")} AS rejected,
         GREATEST(FLOOR((n - 1) / %(batch_size)s),
                  FLOOR((SUM(bytes) OVER (ORDER BY n) - bytes) / %(batch_bytes)s)) AS chunk
  FROM (
    SELECT n, row_count, turns_json, IFNULL(LENGTH(turns_json) + LENGTH(dialog_text), 0) AS bytes
    FROM pushdown_conversations
  ) sized
) calls
GROUP BY chunk
ORDER BY chunk
"""


def _conversations_sql(dst: str) -> str:
    return f"""
INSERT IGNORE INTO {dst}.prepared_conversations
  (call_id, group_code, dialog_date, turn_count, turns_json, dialog_text, first_time, last_time,
   etl_run_id, loaded_at)
SELECT call_id, call_group, %(day)s, {_turn_count("turns_json")}, {_python_escapes("turns_json")}, dialog_text,
       first_time, last_time, %(run_id)s, %(now)s
FROM pushdown_conversations
WHERE n > %(after)s AND n <= %(last)s AND turns_json IS NOT NULL
"""


def _rejects_sql(src: str, dst: str, hint: str) -> str:
    """The rejected rows of the chunk's calls that have any: the only second read of source rows."""
    return f"""
INSERT IGNORE INTO {dst}.prepared_conversation_rejects
  (source_id, call_id, group_code, dialog_date, reason, detail, etl_run_id, rejected_at)
SELECT id, call_id, group_code, %(day)s, reason,
       IF(reason = 'undecodable_text', {_sql_string(_FFFD_DETAIL)}, NULL), %(run_id)s, %(now)s
FROM (
  SELECT s.id, s.call_id, s.group_code, {_REASON} AS reason
  FROM pushdown_conversations c
  STRAIGHT_JOIN {src} s{hint} ON s.call_id = c.call_id
  WHERE c.n > %(after)s AND c.n <= %(last)s
    AND c.row_count > {_turn_count("c.turns_json")}
    AND s.created_at >= %(grace_start)s AND s.created_at < %(grace_end)s
    AND s.group_code IS NOT NULL AND s.group_code != ''
) candidates
WHERE reason IS NOT NULL
"""


_DROP = "DROP TEMPORARY TABLE IF EXISTS pushdown_calls, pushdown_conversations"
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
        conn.exec_driver_sql(_DROP)
        try:
            conn.exec_driver_sql(_calls_sql(src), params)
            conn.exec_driver_sql(_assembled_sql(src, hint), params)
            needs_python = conn.exec_driver_sql(
                "SELECT MAX(needs_python) FROM pushdown_conversations"
            ).scalar()
            if needs_python:
                raise NotPushableError(
                    "content that is not UTF-8, a speaker outside ASCII or call_ids the collation merges"
                )
            chunks = conn.exec_driver_sql(_CHUNKS_SQL, params).all()
            conn.commit()
            conversations_sql, rejects_sql = _conversations_sql(dst), _rejects_sql(src, dst, hint)
            after = 0
            for last, rejects in chunks:
                chunk = {
                    **params,
                    "after": after,
                    "last": last,
                    "now": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                }
                with conn.begin():
                    inserted = conn.exec_driver_sql(conversations_sql, chunk).rowcount
                    selected = _selected(conn)
                    result.conversations += selected
                    result.inserted += inserted
                    result.skipped_existing += selected - inserted
                    if rejects:
                        conn.exec_driver_sql(rejects_sql, chunk)
                        result.rejected += _selected(conn)
                after = last
        finally:
            conn.rollback()
            conn.exec_driver_sql(_DROP)
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
