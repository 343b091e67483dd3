"""
# chatbot_analytics

Every hour, copies the WhatsApp chatbot's new and changed messages from PostgreSQL
(`chatbot_postgres`) into the DuckDB analytics file (`chatbot_duckdb`) and refreshes the daily metrics.

1. **plan_window**: the window runs from the durable keyset watermark `(updated_at, id)` kept in
   DuckDB's `etl_watermark` to the newest message; both ends go to the next task by XCom, so a retry
   copies exactly the same rows.
2. **copy_messages**: the window's messages (with the user's `phone_number`) stream out of PostgreSQL
   by `COPY` in chunks of 100,000 rows (memory holds one chunk) and replace their earlier copies in
   `message_history` by `message_id`; `response_time_ms` (a user message to the next assistant
   reply of its session) is recomputed for the sessions touched, their `conversation_context` (summary
   of the latest turns, merged entities, profile, state) is refreshed, and the watermark advances, all
   in one DuckDB transaction. A re-run writes nothing twice. The task log gives the seconds per phase
   (read and load, response times, contexts, commit) when a copy is slow.
3. **metrics**: `metrics_daily` (PostgreSQL) is upserted for each day the window touched; the README
   defines every column.
4. **embed_messages**: copied messages without an embedding of their current content get one in
   `message_embeddings` (WordLlama's bundled 256-dimension model, loaded offline; a deterministic
   hashing embedding where WordLlama is not installed), searchable with
   `python -m include.chatbot.search "query"`.

DuckDB is single-writer: the tasks that open the file take the one-slot `chatbot_duckdb` pool and
runs never overlap (`max_active_runs=1`); a file held by another process fails the attempt with a
clear `DuckDBLockedError`, which is retried. `summary` returns `{window, copied, metrics, embeddings}`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from include.chatbot.config import DUCKDB_POOL
from include.common.dag_defaults import default_args


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["chatbot", "postgres", "duckdb", "analytics"],
    default_args=default_args(retry_delay_minutes=1),
)
def chatbot_analytics():
    @task(multiple_outputs=False, pool=DUCKDB_POOL)
    def plan_window() -> dict:
        from include.chatbot.tasks import plan_window_task

        return plan_window_task()

    @task(multiple_outputs=False, pool=DUCKDB_POOL)
    def copy_messages(window: dict) -> dict:
        from include.chatbot.tasks import copy_window_task

        return copy_window_task(window)

    @task(multiple_outputs=False, pool=DUCKDB_POOL)
    def metrics(copied: dict) -> list:
        from include.chatbot.tasks import metrics_task

        return metrics_task(copied["days"])

    @task(multiple_outputs=False, pool=DUCKDB_POOL)
    def embed_messages(copied: dict) -> dict:
        from include.chatbot.tasks import embed_task

        return embed_task()

    @task(multiple_outputs=False)
    def summary(window: dict, copied: dict, rows: list, embeddings: dict) -> dict:
        from include.chatbot.tasks import analytics_summary

        return analytics_summary(window, copied, rows, embeddings)

    window = plan_window()
    copied = copy_messages(window)
    summary(window, copied, metrics(copied), embed_messages(copied))


chatbot_analytics()
