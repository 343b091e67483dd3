"""The Callio warehouse behind one interface: embedded DuckDB by default, BigQuery in production.

The Airflow connection's type picks the engine (``duckdb`` or ``google_cloud_platform``), so moving
from the embedded file to BigQuery is a connection change. Nothing heavy is imported here: DAG files
import this package at parse time, and duckdb, pyarrow and the google client load only when a
warehouse is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from include.callio.config import WAREHOUSE_CONN_ID

if TYPE_CHECKING:
    from include.callio.warehouse.base import Warehouse


def duckdb_path(host: str) -> Path:
    """Resolve a duckdb connection's host: relative paths live under the pipelines' data directory."""
    from include.common.db import data_dir

    path = Path(host)
    return path if path.is_absolute() else data_dir() / path


def open_warehouse(conn_id: str = WAREHOUSE_CONN_ID) -> Warehouse:
    """The warehouse of the Airflow connection ``conn_id``.

    ``duckdb``: the file named by the host (default ``<conn_id>.duckdb`` under the data directory).
    ``google_cloud_platform``: BigQuery, see :func:`bigquery_backend.from_connection` for the extras.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "duckdb":
        from include.callio.warehouse.duckdb_backend import DuckDBWarehouse

        return DuckDBWarehouse(duckdb_path(conn.host or f"{conn_id}.duckdb"))
    if conn_type == "google_cloud_platform":
        from include.callio.warehouse.bigquery_backend import from_connection

        return from_connection(conn_id, conn.extra_dejson)
    raise ValueError(
        f"connection {conn_id!r} has type {conn.conn_type!r}; expected duckdb or google_cloud_platform"
    )
