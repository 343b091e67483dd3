"""``default_args`` every DAG of the repository shares: owner, retries with exponential backoff; and
the way out of those retries for errors that no retry can fix.

Imported at parse time, so it imports nothing but pendulum at module level.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import pendulum


def default_args(retry_delay_minutes: int = 2, retries: int = 2) -> dict:
    return {
        "owner": "data-engineering",
        "retries": retries,
        "retry_delay": pendulum.duration(minutes=retry_delay_minutes),
        "retry_exponential_backoff": True,
    }


@contextlib.contextmanager
def fail_without_retry(*errors: type[Exception]) -> Generator[None]:
    """Turn ``errors`` raised in the block into Airflow's ``AirflowFailException``, which fails the task
    at once: a table of the wrong shape or a bad setting stays wrong however often the task retries."""
    try:
        yield
    except errors as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
