"""``default_args`` every DAG of the repository shares: owner, retries with exponential backoff.

Imported at parse time, so it imports nothing but pendulum.
"""

from __future__ import annotations

import pendulum


def default_args(retry_delay_minutes: int = 2, retries: int = 2) -> dict:
    return {
        "owner": "data-engineering",
        "retries": retries,
        "retry_delay": pendulum.duration(minutes=retry_delay_minutes),
        "retry_exponential_backoff": True,
    }
