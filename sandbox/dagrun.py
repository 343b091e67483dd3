"""Run a DAG in-process (``dag.test()``) and read back what its last task returned.

The demo and the end-to-end tests both need "run this DAG with this conf, give me its summary";
they use the same metadata database the run wrote to, exactly as the REST API's XCom endpoint would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from include.common.db import REPO_ROOT

DAGS_FOLDER = REPO_ROOT / "dags"


@dataclass
class RunOutcome:
    run_id: str
    state: str
    summary: Any
    task_states: dict[str, str]


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(DAGS_FOLDER / f"{dag_id}.py"))
    if bag.import_errors:
        raise RuntimeError(f"{dag_id} does not import: {bag.import_errors}")
    return bag.get_dag(dag_id)


def run_dag(
    dag_id: str,
    conf: dict | None = None,
    summary_task: str = "summary",
    *,
    scheduled_at: dt.datetime | None = None,
    **test_kwargs,
) -> RunOutcome:
    """Run ``dag_id`` once with ``conf`` and return its state and the ``summary_task`` XCom.

    The run is a manual one, as from the trigger form; with ``scheduled_at``, it is the scheduled run
    the timetable makes at that time instead (a DAG may behave differently in the two)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with _scheduled() if scheduled_at else contextlib.nullcontext():
        dag_run = load_dag(dag_id).test(
            run_conf=conf or {},
            **({"logical_date": scheduled_at, "run_after": scheduled_at} if scheduled_at else {}),
            **test_kwargs,
        )
    with create_session() as session:
        xcom = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id, dag_ids=dag_id, task_ids=summary_task, key="return_value"
            )
        ).first()
        states = {
            f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
            for ti in dag_run.get_task_instances(session=session)
        }
    return RunOutcome(dag_run.run_id, str(dag_run.state), xcom.value if xcom else None, states)


@contextlib.contextmanager
def _scheduled() -> Generator[None]:
    """Make ``dag.test()`` create its run as the scheduler would (at its logical date): it always
    creates a manual run, through ``airflow.models.dagrun.get_or_create_dagrun``, which it looks up
    when called; the rest of the run (tasks, XComs, states) is ``dag.test()``'s own."""
    import airflow.models.dagrun as dagrun_module
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    manual = dagrun_module.get_or_create_dagrun

    def scheduled(*, dag, session, logical_date, data_interval, run_after, conf, start_date, **_):
        existing = session.scalar(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.logical_date == logical_date)
        )
        if existing:
            session.delete(existing)
            session.commit()
        return dag.create_dagrun(
            run_id=DagRun.generate_run_id(
                run_type=DagRunType.SCHEDULED, logical_date=logical_date, run_after=run_after
            ),
            logical_date=logical_date,
            data_interval=data_interval,
            run_after=run_after,
            conf=conf,
            run_type=DagRunType.SCHEDULED,
            state=DagRunState.RUNNING,
            triggered_by=DagRunTriggeredByType.TIMETABLE,
            start_date=start_date,
            session=session,
        )

    dagrun_module.get_or_create_dagrun = scheduled
    try:
        yield
    finally:
        dagrun_module.get_or_create_dagrun = manual
