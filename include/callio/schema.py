"""The warehouse tables of the Callio pipeline: names, columns, partitioning and clustering.

One definition serves both backends (BigQuery and DuckDB), so their tables cannot drift apart. Column
names are the original service's, case included (``NgayTao``, ``customField_0_val``): reports and
dashboards built on the old dataset keep working. Types are BigQuery's standard SQL names; the DuckDB
backend maps them (:data:`DUCKDB_TYPES`).

Times from the API stay as they come, epoch milliseconds (``INT64``); the ``Ngay*`` columns are the
calendar day of such a time in the business's zone, Asia/Ho_Chi_Minh (UTC+7, no daylight saving), so a
call at 23:30 in Hanoi counts for that day, not the next one as a UTC date would have it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BUSINESS_TZ = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    partition_by: str | None = None  # a DATE column, or a TIMESTAMP column partitioned by its day
    cluster_by: tuple[str, ...] = field(default=())
    description: str = ""

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def type_of(self, column: str) -> str:
        return dict(self.columns)[column]


CALL_LOG = Table(
    "call_log",
    (
        ("_id", "STRING"),
        ("chargeTime", "INT64"),
        ("createTime", "INT64"),
        ("direction", "STRING"),
        ("fromNumber", "STRING"),
        ("toNumber", "STRING"),
        ("startTime", "INT64"),
        ("endTime", "INT64"),
        ("duration", "INT64"),
        ("billDuration", "INT64"),
        ("hangupCause", "STRING"),
        ("answerTime", "INT64"),
        ("fromUser__id", "STRING"),
        ("fromUser__name", "STRING"),
        ("fromGroup__id", "STRING"),
        ("tenant", "STRING"),
        ("row_hash", "STRING"),
        ("NgayTao", "DATE"),
    ),
    partition_by="NgayTao",
    cluster_by=("tenant",),
    description="Calls, appended once per _id (a call does not change once logged).",
)

_CUSTOMER_COLUMNS = (
    ("_id", "STRING"),
    ("assignedTime", "INT64"),
    ("createTime", "INT64"),
    ("updateTime", "INT64"),
    ("name", "STRING"),
    ("phone", "STRING"),
    ("user_id", "STRING"),
    ("user_name", "STRING"),
    ("user_group_id", "STRING"),
    ("tenant", "STRING"),
    ("row_hash", "STRING"),
    ("customField_0_val", "STRING"),
    ("NgayUpdate", "DATE"),
    ("NgayAssign", "DATE"),
)

CUSTOMER = Table(
    "customer",
    _CUSTOMER_COLUMNS,
    partition_by="NgayUpdate",
    cluster_by=("tenant", "_id"),
    description="Customers, the newest updateTime per (tenant, _id).",
)

STG_CUSTOMER = Table(
    "stg_customer",
    _CUSTOMER_COLUMNS,
    partition_by="NgayUpdate",
    cluster_by=("tenant", "_id"),
    description="Customers staged by the tenants' fetches; merged into customer once per run, then cleared.",
)

STG_CALL_LOG = Table(
    "stg_call_log",
    CALL_LOG.columns,
    partition_by="NgayTao",
    cluster_by=("tenant",),
    description="Calls staged by the tenants' fetches; appended to call_log once per run, then cleared.",
)

_STAFF_COLUMNS = (
    ("_id", "STRING"),
    ("email", "STRING"),
    ("name", "STRING"),
    ("updateTime", "INT64"),
    ("createTime", "INT64"),
    ("group_id", "STRING"),
    ("tenant", "STRING"),
    ("row_hash", "STRING"),
)

STAFF = Table(
    "staff",
    _STAFF_COLUMNS,
    cluster_by=("tenant", "name"),
    description="Staff (Callio users), merged on (tenant, name) from each day's snapshot.",
)

STG_STAFF = Table(
    "stg_staff", _STAFF_COLUMNS, cluster_by=("tenant", "name"), description="Staff snapshot staging."
)

_GROUP_COLUMNS = (
    ("group_id", "STRING"),
    ("name", "STRING"),
    ("tenant", "STRING"),
    ("row_hash", "STRING"),
)

GROUP = Table(
    "group",
    _GROUP_COLUMNS,
    cluster_by=("tenant", "group_id"),
    description="Staff groups, replaced by each day's snapshot (a tenant without a snapshot keeps its rows).",
)

STG_GROUP = Table(
    "stg_group", _GROUP_COLUMNS, cluster_by=("tenant", "group_id"), description="Group snapshot staging."
)

UPDATE_LOG = Table(
    "update_log",
    (
        ("table_name", "STRING"),
        ("tenant", "STRING"),
        ("updated_at", "TIMESTAMP"),
        ("rows_loaded", "INT64"),
        ("max_updateTime", "INT64"),
        ("mode", "STRING"),
        ("run_id", "STRING"),
        ("window_from", "INT64"),
        ("window_to", "INT64"),
        ("detail", "STRING"),
    ),
    partition_by="updated_at",
    cluster_by=("table_name", "tenant"),
    description=(
        "One row per load or merge. A row's max_updateTime is a checkpoint: the newest source time up to "
        "which the table holds everything of the tenant (NULL on rows that commit none: STAGED, "
        "ERROR_LOGIN, backfills)."
    ),
)

FACT_STAFF_DAILY = Table(
    "fact_staff_daily_PK",
    (
        ("tenant", "STRING"),
        ("day", "DATE"),
        ("staff_id", "STRING"),
        ("staff_name", "STRING"),
        ("group_id", "STRING"),
        ("calls_in", "INT64"),
        ("calls_out", "INT64"),
        ("calls_answered", "INT64"),
        ("talk_seconds", "INT64"),
        ("bill_seconds", "INT64"),
        ("customers_assigned", "INT64"),
        ("customers_updated", "INT64"),
        ("refreshed_at", "TIMESTAMP"),
    ),
    partition_by="day",
    cluster_by=("tenant", "staff_id"),
    description="Per tenant, staff member and business day (UTC+7): calls and customer work.",
)

REJECTS = Table(
    "rejects",
    (
        ("table_name", "STRING"),
        ("tenant", "STRING"),
        ("record_id", "STRING"),
        ("reason", "STRING"),
        ("payload", "STRING"),
        ("run_id", "STRING"),
        ("rejected_at", "TIMESTAMP"),
    ),
    partition_by="rejected_at",
    cluster_by=("table_name", "tenant"),
    description="API records that could not be loaded (no _id, unusable times), with the reason and run id.",
)

TABLES: tuple[Table, ...] = (
    CALL_LOG,
    STG_CALL_LOG,
    CUSTOMER,
    STG_CUSTOMER,
    STAFF,
    STG_STAFF,
    GROUP,
    STG_GROUP,
    UPDATE_LOG,
    FACT_STAFF_DAILY,
    REJECTS,
)

DUCKDB_TYPES = {"STRING": "VARCHAR", "INT64": "BIGINT", "DATE": "DATE", "TIMESTAMP": "TIMESTAMPTZ"}

# update_log modes
NOOP, STAGED, MERGED, APPEND, TRUNCATE, ERROR_LOGIN = (
    "NOOP",
    "STAGED",
    "MERGED",
    "APPEND",
    "TRUNCATE",
    "ERROR_LOGIN",
)
MODES = (NOOP, STAGED, MERGED, APPEND, TRUNCATE, ERROR_LOGIN)
