"""Which Shanghai day a dialog_etl run processes, for every way a run can start."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest

from include.dialog.days import day_bounds, day_to_process, parse_day

UTC = dt.UTC


def test_explicit_target_date_wins():
    assert day_to_process("2024-02-29", None, dt.datetime(2025, 1, 1, tzinfo=UTC)) == dt.date(2024, 2, 29)


@pytest.mark.parametrize("bad", ["2024-13-01", "2024-02-30", "20240601", "yesterday", "2024-6-1x"])
def test_bad_target_date_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_day(bad)


def test_manual_run_without_logical_date_processes_the_shanghai_day_before_run_after():
    # 2024-06-01 20:30 UTC is already 2024-06-02 04:30 in Shanghai: "yesterday" there is June 1.
    assert day_to_process(None, None, dt.datetime(2024, 6, 1, 20, 30, tzinfo=UTC)) == dt.date(2024, 6, 1)
    assert day_to_process(None, None, dt.datetime(2024, 6, 1, 15, 0, tzinfo=UTC)) == dt.date(2024, 5, 31)


@pytest.fixture
def dialog_dag(airflow_db):
    """The DAG as the scheduler and `airflow backfill create` see it (serialized; loading it reads
    the metadata database)."""
    from airflow.serialization.serialized_objects import DagSerialization

    from sandbox.dagrun import load_dag

    return DagSerialization.from_dict(DagSerialization.to_dict(load_dag("dialog_etl")))


def test_scheduled_runs_process_the_previous_shanghai_day(dialog_dag):
    dag = dialog_dag
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None, restriction=_restriction(pendulum.datetime(2024, 6, 1, tz="UTC"))
    )
    assert info.logical_date == pendulum.datetime(2024, 6, 1, 17, tz="UTC")  # 01:00 on June 2 in Shanghai
    assert day_to_process(None, info.logical_date, info.run_after) == dt.date(2024, 6, 1)


def _restriction(earliest):
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=earliest, latest=None, catchup=True)


def test_backfill_range_processes_each_day_once(dialog_dag):
    """`airflow backfill create --from-date 2024-06-02 --to-date 2024-06-06` picks the runs whose
    logical_date lies in that range (Airflow's own selection, used here); each processes one day."""
    dag = dialog_dag
    infos = list(
        dag.iter_dagrun_infos_between(
            pendulum.datetime(2024, 6, 2, tz="UTC"), pendulum.datetime(2024, 6, 6, tz="UTC")
        )
    )
    days = [day_to_process(None, i.logical_date, i.run_after) for i in infos]
    assert days == [dt.date(2024, 6, d) for d in (2, 3, 4, 5)]


def test_day_bounds_are_naive_local_half_open():
    assert day_bounds(dt.date(2024, 6, 1)) == (dt.datetime(2024, 6, 1), dt.datetime(2024, 6, 2))
