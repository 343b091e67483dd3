"""``default_args`` every DAG of the repository shares: owner, retries with exponential backoff; and
the way out of those retries for errors that no retry can fix.

Imported at parse time, so it imports nothing but pendulum at module level.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator

import pendulum

#: Overrides every DAG's retry delay, in seconds, where the DAG files are parsed: a test or try-out
#: cluster whose failure drills should not wait minutes for a retry.
RETRY_DELAY_ENV = "PIPELINES_RETRY_DELAY_SECONDS"


def default_args(retry_delay_minutes: int = 2, retries: int = 2) -> dict:
    return {
        "owner": "data-engineering",
        "retries": retries,
        "retry_delay": _retry_delay(retry_delay_minutes),
        "retry_exponential_backoff": True,
    }


def _retry_delay(minutes: int) -> pendulum.Duration:
    override = os.environ.get(RETRY_DELAY_ENV, "").strip()
    if not override:
        return pendulum.duration(minutes=minutes)
    try:
        seconds = float(override)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(f"{RETRY_DELAY_ENV} must be a number of seconds (0 or more), not {override!r}")
    return pendulum.duration(seconds=seconds)


@contextlib.contextmanager
def fail_without_retry(*errors: type[Exception]) -> Generator[None]:
    """Turn ``errors`` raised in the block into Airflow's ``AirflowFailException``, which fails the task
    at once: a table of the wrong shape or a bad setting stays wrong however often the task retries."""
    try:
        yield
    except errors as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
