"""Entry points the aico_knowledge_sync DAG calls: plain values in, XCom-friendly values out.

Connections are resolved here, at run time: the profile from the AICO_HOST Variable of this moment,
engines from the connections it names. Passwords and tokens are masked in the task logs.
"""

from __future__ import annotations

import logging
from typing import Any

from include.aico import sync
from include.aico.client import AicoError
from include.aico.config import AicoConfigError, load_settings
from include.aico.scenarios import ScenarioError
from include.aico.schema import migrate
from include.common.dag_defaults import fail_without_retry
from include.common.db import engine_for
from include.common.table_shape import TableShapeError

log = logging.getLogger(__name__)


def _mask(secret: str) -> None:
    from airflow.sdk.log import mask_secret

    if secret:
        mask_secret(secret)


def plan_task(profile: dict[str, Any], scenario_ids: list[int | str] | None) -> dict[str, Any]:
    """Migrate the target database, then list the scenarios to sync and the unchanged ones."""
    engine = engine_for(profile["target_conn_id"])
    with fail_without_retry(TableShapeError, ScenarioError):
        migrate(engine)
        planned = sync.plan(engine, profile["profile"], profile["aico_host"], list(scenario_ids or []))
    log.info(
        "to sync: %s; unchanged: %s",
        ", ".join(s["code"] for s in planned["to_sync"]) or "none",
        ", ".join(planned["unchanged"]) or "none",
    )
    return planned


def sync_task(
    profile: dict[str, Any], scenario: dict[str, Any], run_id: str, dry_run: bool
) -> dict[str, Any]:
    with fail_without_retry(AicoConfigError, ScenarioError):
        settings = load_settings(profile["aico_host"])
    engine = engine_for(profile["target_conn_id"])
    # The client has retried AICO's transient failures already; the sync log says where this attempt
    # stopped and the next run finishes it, so a task retry would only repeat the same calls sooner.
    with fail_without_retry(ScenarioError, AicoError):
        return sync.sync_scenario(
            engine,
            settings,
            int(scenario["scenario_id"]),
            profile["profile"],
            profile["aico_host"],
            run_id,
            dry_run=dry_run,
            mask=_mask,
        )


def summary_task(
    profile: dict[str, Any],
    to_sync: list[dict[str, Any]],
    unchanged: dict[str, Any],
    results: list[dict[str, Any]],
    dry_run: bool,
) -> dict[str, Any]:
    codes = [s["code"] for s in to_sync]
    summary = sync.summarize(profile, list(results), unchanged, codes, dry_run)
    log.info("aico_knowledge_sync: %s", summary)
    return summary
