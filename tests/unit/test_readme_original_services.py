"""The README's "Coming from the original services" names every endpoint, setting and command line of
the five original services (their documents are ``seeds/`` of the shared folder) beside what replaces it,
or says it is not yet available."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

#: What each original document names: endpoints, `.env` keys, command lines.
ORIGINAL = {
    "dialog (000)": [
        "POST /api/v1/etl/run",
        "GET /health",
        "url=jdbc:mysql://",
        "username",
        "password",
        "SRC_DB_HOST",
        "SRC_DB_NAME",
        "DST_DB_HOST",
        "DST_DB_NAME",
        "ETL_CRON",
        "ETL_MAX_WORKERS",
        "APP_TIMEZONE",
        "LOG_LEVEL",
        "AICO_HOST",
        "AICO_HOST_TEST",
        "AICO_HOST_PROD",
        "TEST_URL",
        "TEST_USERNAME",
        "TEST_PASSWORD",
        "PROD_URL",
        "PROD_USERNAME",
        "PROD_PASSWORD",
        "TEST_DST_URL",
        "PROD_DST_URL",
        "scenarios.aico_host",
    ],
    "callio (001)": [
        "python -m callio_etl --mode once --job all",
        "python -m callio_etl --mode daemon",
        "--job customer",
        "SERVICE_ACCOUNT_KEY_JSON",
        "SERVICE_ACCOUNT_KEY_FILE",
        "CALLIO_ACCOUNTS_JSON",
        "CALLIO_ACCOUNTS_FILE",
        "BQ_PROJECT_ID",
        "BQ_DATASET_ID",
        "BQ_LOCATION",
        "LIMIT_RECORDS_PER_ENDPOINT",
        "SCHEDULER_RUN_TIMES_UTC",
        "SCHEDULER_STAFF_GROUP_TIME_UTC",
        "OVERLAP_MS",
        "DAYS_TO_FETCH_IF_EMPTY",
        "API_TIMEOUT",
        "API_PAGE_SIZE",
        "API_TIME_SLICE_MS",
        "API_MIN_SLICE_MS",
        "CALLIO_API_BASE_URL",
        "run_etl.cmd",
    ],
    "product (002)": [
        "python -m app.agents.workers.etl_product_worker --limit 1000 --resume --dry-run",
        "sql/schema.sql",
        "etl_watermark",
        "product_change_log",
    ],
    "chatbot (003)": [
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_DB",
        "DUCKDB_PATH",
        "SQL_ECHO",
        "scripts/init_databases.py --seed",
    ],
    "dwh helper (004)": [
        *(
            f"/dwh/{slug}"
            for slug in (
                "events-part",
                "mobile-devices",
                "permanent-user-properties",
                "technical-data",
                "event-properties",
                "user-properties",
                "user-locations",
            )
        ),
        "GET /s3/objects",
        "GET /s3/object-info",
        "GET /s3/download",
        "POST /s3/upload",
        "PUT /s3/update",
        "PATCH /s3/patch",
        "DELETE /s3/delete",
        "GET /appmetrica/ping",
        "GET /appmetrica/fetch-export",
        "GET /amplitude/export",
        "/docs",
        "/redoc",
        "/openapi.json",
        "TITLE",
        "VERSION",
        "DESCRIPTION",
        "DEBUG",
        "DWH_DATABASE_URL",
        "DWH_MAX_WRITE_BATCH_BYTES",
        "DWH_MAX_ROWS_PER_INSERT",
        "APPMETRICA_BASE_URL",
        "APPMETRICA_API_KEY",
        "APPMETRICA_APPLICATION_ID",
        "APPMETRICA_POLL_INTERVAL_SECONDS",
        "APPMETRICA_POLL_TIMEOUT_SECONDS",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_REGION",
        "S3_ENDPOINT_URL",
        "S3_BUCKET_NAME",
        "LOGGING_LEVEL",
        "AMPLITUDE_WEB_CLIENT_ID",
        "AMPLITUDE_WEB_SECRET_KEY",
        "AMPLITUDE_MOBILE_CLIENT_ID",
        "AMPLITUDE_MOBILE_SECRET_KEY",
    ],
}
#: The Airflow equivalents the section must give.
EQUIVALENTS = [
    "POST /api/v2/dags/dialog_etl/dagRuns",
    "taskInstances/summary/xcomEntries/return_value",
    "GET /api/v2/monitor/health",
    "airflow dags unpause dialog_etl",
    "DIALOG_ETL_CRON",
    "CALLIO_RUN_TIMES_UTC",
    "CALLIO_STAFF_GROUP_TIME_UTC",
    "/pluginsv2/dwh-helper",
    "POST /auth/token",
]


@pytest.fixture(scope="module")
def section() -> str:
    text = README.read_text()
    match = re.search(r"^## Coming from the original services\n(.*?)^## ", text, re.M | re.S)
    assert match, 'README has no "## Coming from the original services" section'
    return match.group(1)


@pytest.mark.parametrize("service", sorted(ORIGINAL))
def test_every_original_endpoint_setting_and_command_is_mapped(section, service):
    """Each item appears in code spelling in a row of the section (or its not-yet-available note)."""
    quoted = set(re.findall(r"`([^`]+)`", section))
    missing = [item for item in ORIGINAL[service] if not any(item in q for q in quoted)]
    assert not missing, f"{service}: the section does not name {missing}"


def test_the_airflow_equivalents_are_given(section):
    missing = [item for item in EQUIVALENTS if item not in section]
    assert not missing, missing


def test_the_chatbot_maintenance_has_its_counterparts(section):
    """The guide's backup, restore, VACUUM, monitoring and retention each have a named equivalent."""
    for item in ("pg_dump", "VACUUM ANALYZE;", "make chatbot-restore", "chatbot_maintenance", "LGPD"):
        assert item in section, item
    assert "not yet available" not in section
