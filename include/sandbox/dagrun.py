"""Run a DAG in-process (``dag.test()``) and read back what its last task returned.

The demo and the end-to-end tests both need "run this DAG with this conf, give me its summary";
they use the same metadata database the run wrote to, exactly as the REST API's XCom endpoint would.
"""

from __future__ import annotations

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
    dag_id: str, conf: dict | None = None, summary_task: str = "summary", **test_kwargs
) -> RunOutcome:
    """Run ``dag_id`` once with ``conf`` and return its state and the ``summary_task`` XCom."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_run = load_dag(dag_id).test(run_conf=conf or {}, **test_kwargs)
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
