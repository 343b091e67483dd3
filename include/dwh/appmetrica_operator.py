"""The deferrable operator of ``appmetrica_export``: queue one (resource, day) export, wait for it in
the triggerer (:class:`~include.dwh.appmetrica_trigger.AppMetricaReadyTrigger`), then download it once,
streamed to a work directory, and store it raw in S3. Imported by the DAG file at parse time: it
imports nothing heavy at module level.

Put the task in the pool :data:`include.dwh.config.APPMETRICA_POOL` with 3 slots and
``include_deferred`` on: a deferred task keeps its pool slot (not a worker slot), so at most three
exports are queued at AppMetrica at once, the Logs API's limit per application.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


class AppMetricaExportOperator(BaseOperator):
    template_fields = ("job", "poll_interval", "timeout_s")

    def __init__(
        self,
        *,
        job: dict[str, Any],
        poll_interval: float | str = 30.0,
        timeout_s: float | str = 3 * 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.poll_interval = poll_interval
        self.timeout_s = timeout_s

    def execute(self, context: Any) -> dict[str, Any]:
        stored = self._store_if_ready()
        if stored is not None:
            return stored
        from include.dwh.appmetrica_trigger import AppMetricaReadyTrigger

        self.log.info(
            "AppMetrica %s %s: queued; waiting in the triggerer", self.job["resource"], self.job["day"]
        )
        self.defer(
            trigger=AppMetricaReadyTrigger(self.job, float(self.poll_interval), float(self.timeout_s)),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "ready":
            from include.dwh.appmetrica import AppMetricaError

            raise AppMetricaError(
                f"AppMetrica {self.job['resource']} {self.job['day']}: {(event or {}).get('message')}"
            )
        stored = self._store_if_ready()
        if stored is None:  # the file was ready a moment ago; it stays for 24 h, so this is transient
            from include.dwh.appmetrica import AppMetricaUnavailableError

            raise AppMetricaUnavailableError(
                f"AppMetrica {self.job['resource']} {self.job['day']}: ready, then not"
            )
        return {**stored, "polls": event.get("polls")}

    def _store_if_ready(self) -> dict[str, Any] | None:
        from include.dwh.export_tasks import appmetrica_store_if_ready

        return appmetrica_store_if_ready(self.job)
