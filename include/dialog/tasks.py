"""Entry points the dialog_etl DAG calls: connection ids and strings in, XCom-friendly values out.

They resolve connections into engines at run time (never at parse time) and keep the DAG file a
plain description of the wiring.
"""

from __future__ import annotations

import logging

from include.common.dag_defaults import fail_without_retry
from include.common.db import engine_for
from include.common.table_shape import TableShapeError
from include.dialog.days import parse_day
from include.dialog.etl import find_groups, reject_unroutable, summarize
from include.dialog.pushdown import choose_path, load_group_on
from include.dialog.schema import check_source_table, ensure_target_tables

log = logging.getLogger(__name__)


def find_groups_task(source_conn_id: str, target_conn_id: str, target_date: str) -> list[str]:
    """Check the tables and create the missing target ones (once, before the fan-out); list the day's
    groups. A table of the wrong shape fails the task at once: retrying cannot fix it."""
    source, target = engine_for(source_conn_id), engine_for(target_conn_id)
    with fail_without_retry(TableShapeError):
        check_source_table(source)
        ensure_target_tables(target)
    groups = find_groups(source, parse_day(target_date))
    log.info("%s: %d group_codes: %s", target_date, len(groups), ", ".join(groups))
    return groups


def load_group_task(
    source_conn_id: str,
    target_conn_id: str,
    target_date: str,
    group_code: str,
    run_id: str,
    load_path: str = "auto",
) -> dict:
    """One group on the path the connections allow (``load_path`` ``streaming`` forces streaming)."""
    source, target = engine_for(source_conn_id), engine_for(target_conn_id)
    path = choose_path(source, target, load_path)
    result = load_group_on(path, source, target, parse_day(target_date), group_code, run_id)
    return result.as_dict()


def reject_unroutable_task(source_conn_id: str, target_conn_id: str, target_date: str, run_id: str) -> int:
    return reject_unroutable(
        engine_for(source_conn_id), engine_for(target_conn_id), parse_day(target_date), run_id
    )


def summary_task(
    source_conn_id: str,
    target_conn_id: str,
    target_date: str,
    results: list[dict],
    rejected_unroutable: int,
    load_path: str = "auto",
) -> dict:
    """The run's answer, in the original service's shape plus its load path; rejects are logged
    beside it."""
    path = choose_path(engine_for(source_conn_id), engine_for(target_conn_id), load_path)
    summary = summarize(parse_day(target_date), results, path)
    rejected = rejected_unroutable + sum(r["rejected"] for r in results)
    log.info("dialog_etl %s: %s; rejected rows: %d", target_date, summary, rejected)
    return summary
