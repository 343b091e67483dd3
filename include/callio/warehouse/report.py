"""``fact_staff_daily_PK``: per tenant, business day and staff member, the calls and customer work.

Definitions (days are the ``Ngay*`` columns, already business days in UTC+7):

- ``calls_in`` / ``calls_out``: calls of the day whose ``direction`` is ``inbound`` / ``outbound``,
  attributed to ``fromUser__id``.
- ``calls_answered``: calls with ``answerTime > 0``.
- ``talk_seconds``: ``endTime - answerTime`` of the answered calls, summed in milliseconds and rounded
  to seconds once per row. It measures the conversation itself from the API's own clock; ``duration``
  includes ringing and its unit is not documented.
- ``bill_seconds``: the sum of ``billDuration`` as the API reports it.
- ``customers_assigned``: customers whose ``NgayAssign`` is the day and whose current ``user_id`` is
  the staff member; ``customers_updated`` likewise on ``NgayUpdate``. The customer table keeps only
  each customer's current version, so a customer reassigned or updated since counts for its new owner
  and day only.
- ``staff_name`` / ``group_id`` come from the staff table (matched on ``_id``), falling back to the
  name and group the calls and customers carry.
- Calls and customers without a staff member are reported under ``staff_id = ''``: keys stay non-null,
  so rows match with plain equality and totals per day stay complete.

A refresh recomputes whole days: rows of the range whose activity disappeared are deleted (a zero row
carries no information), changed rows are updated, unchanged rows are left alone, so a second refresh
of the same range affects nothing.
"""

from __future__ import annotations

import datetime as dt

from include.callio import schema
from include.callio.warehouse.sql import Dialect

MEASURES = (
    "calls_in",
    "calls_out",
    "calls_answered",
    "talk_seconds",
    "bill_seconds",
    "customers_assigned",
    "customers_updated",
)
KEY = ("tenant", "day", "staff_id")


def _activity(d: Dialect, since: dt.date, until: dt.date) -> str:
    """One row per call, per assigned and per updated customer of the range, with its contribution."""
    q = d.ident
    answered = f"{q('answerTime')} > 0"
    calls = (
        f"SELECT {q('tenant')} AS tenant, {q('NgayTao')} AS day, COALESCE({q('fromUser__id')}, '') AS staff_id, "
        f"{q('fromUser__name')} AS seen_name, {q('fromGroup__id')} AS seen_group, "
        f"CASE WHEN {q('direction')} = 'inbound' THEN 1 ELSE 0 END AS calls_in, "
        f"CASE WHEN {q('direction')} = 'outbound' THEN 1 ELSE 0 END AS calls_out, "
        f"CASE WHEN {answered} THEN 1 ELSE 0 END AS calls_answered, "
        f"CASE WHEN {answered} AND {q('endTime')} > {q('answerTime')} "
        f"THEN {q('endTime')} - {q('answerTime')} ELSE 0 END AS talk_ms, "
        f"COALESCE({q('billDuration')}, 0) AS bill_seconds, 0 AS customers_assigned, 0 AS customers_updated "
        f"FROM {d.table(schema.CALL_LOG)} WHERE {d.between(q('NgayTao'), since, until)}"
    )
    customer = f"COALESCE({q('user_id')}, ''), {q('user_name')}, {q('user_group_id')}, 0, 0, 0, 0, 0"
    # Assigning a customer updates it, so NgayAssign <= NgayUpdate: the lower bound on the partition
    # column is safe and skips every older partition.
    assigned = (
        f"SELECT {q('tenant')}, {q('NgayAssign')}, {customer}, 1, 0 FROM {d.table(schema.CUSTOMER)} "
        f"WHERE {q('NgayUpdate')} >= {d.date(since)} AND {d.between(q('NgayAssign'), since, until)}"
    )
    updated = (
        f"SELECT {q('tenant')}, {q('NgayUpdate')}, {customer}, 0, 1 FROM {d.table(schema.CUSTOMER)} "
        f"WHERE {d.between(q('NgayUpdate'), since, until)}"
    )
    return f"{calls} UNION ALL {assigned} UNION ALL {updated}"


def _daily(d: Dialect, since: dt.date, until: dt.date) -> str:
    q = d.ident
    staff = (
        f"SELECT {d.columns(['tenant', '_id', 'name', 'group_id'])} FROM {d.table(schema.STAFF)} "
        f"WHERE {q('_id')} IS NOT NULL QUALIFY ROW_NUMBER() OVER "
        f"(PARTITION BY {d.columns(['tenant', '_id'])} ORDER BY {q('updateTime')} DESC NULLS LAST, {q('name')}) = 1"
    )
    sums = (
        ", ".join(f"SUM(A.{m}) AS {m}" for m in MEASURES if m != "talk_seconds")
        + f", CAST(ROUND(SUM(A.talk_ms) / 1000) AS {d.int64}) AS talk_seconds"
    )
    return (
        f"SELECT A.tenant AS tenant, A.day AS day, A.staff_id AS staff_id, "
        f"COALESCE(MAX(N.{q('name')}), MAX(A.seen_name)) AS staff_name, "
        f"COALESCE(MAX(N.{q('group_id')}), MAX(A.seen_group)) AS group_id, {sums} "
        f"FROM ({_activity(d, since, until)}) AS A "
        f"LEFT JOIN ({staff}) AS N ON N.{q('tenant')} = A.tenant AND N.{q('_id')} = A.staff_id "
        f"GROUP BY A.tenant, A.day, A.staff_id"
    )


def refresh_staff_daily(d: Dialect, since: dt.date, until: dt.date) -> str:
    """One MERGE that makes the days ``since`` .. ``until`` of the fact table match the sources."""
    q = d.ident
    fact = schema.FACT_STAFF_DAILY
    days = d.between(f"T.{q('day')}", since, until)
    values = ["staff_name", "group_id", *MEASURES]
    differs = " OR ".join(f"T.{q(c)} IS DISTINCT FROM S.{c}" for c in values)
    inserted = [*KEY, *values]
    return (
        f"MERGE INTO {d.table(fact)} AS T USING ({_daily(d, since, until)}) AS S "
        f"ON {days} AND " + " AND ".join(f"T.{q(k)} = S.{k}" for k in KEY) + " "
        f"WHEN MATCHED AND ({differs}) THEN UPDATE SET "
        + ", ".join(f"{q(c)} = S.{c}" for c in values)
        + f", {q('refreshed_at')} = CURRENT_TIMESTAMP "
        f"WHEN NOT MATCHED THEN INSERT ({d.columns([*inserted, 'refreshed_at'])}) "
        f"VALUES ({', '.join(f'S.{c}' for c in inserted)}, CURRENT_TIMESTAMP) "
        f"WHEN NOT MATCHED BY SOURCE AND {days} THEN DELETE"
    )
