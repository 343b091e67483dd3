"""Wait for an AppMetrica export in the triggerer, so the waiting task holds no worker slot.

The trigger repeats the export's exact request every ``poll_interval`` seconds, reading only the
status line (the body of a ready export is downloaded once, by the task, when it resumes): 202 means
still preparing, 429 and 5xx mean ask again later, 200 fires ``{"status": "ready"}``, anything else
or the ``timeout_s`` deadline fires ``{"status": "error", "message"}``. The OAuth token is read from the
connection inside the triggerer, never stored in the trigger's (persisted) arguments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class AppMetricaReadyTrigger(BaseTrigger):
    def __init__(self, job: dict[str, Any], poll_interval: float, timeout_s: float) -> None:
        super().__init__()
        self.job = job
        self.poll_interval = poll_interval
        self.timeout_s = timeout_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "include.dwh.appmetrica_trigger.AppMetricaReadyTrigger",
            {"job": self.job, "poll_interval": self.poll_interval, "timeout_s": self.timeout_s},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx

        from include.dwh.appmetrica import load_settings
        from include.dwh.appmetrica_export import request_params

        settings = await asyncio.to_thread(load_settings)
        path, params = request_params(self.job, settings)
        deadline = time.monotonic() + self.timeout_s
        polls = 0
        async with httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=httpx.Timeout(settings.request_timeout_s),
            headers={"Authorization": f"OAuth {settings.token}"},
        ) as http:
            while True:
                polls += 1
                try:
                    async with http.stream("GET", path, params=params) as response:
                        status = response.status_code
                except httpx.TransportError as exc:
                    self.log.warning("AppMetrica %s: %s; asking again", path, type(exc).__name__)
                    status = 503
                if status == 200:
                    yield TriggerEvent({"status": "ready", "polls": polls})
                    return
                if status not in (202, 429) and status < 500:
                    yield TriggerEvent({"status": "error", "message": f"HTTP {status}", "polls": polls})
                    return
                if time.monotonic() + self.poll_interval > deadline:
                    message = f"not ready after {polls} requests within {self.timeout_s:g} s"
                    yield TriggerEvent({"status": "error", "message": message, "polls": polls})
                    return
                await asyncio.sleep(self.poll_interval)
