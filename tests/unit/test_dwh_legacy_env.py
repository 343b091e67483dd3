"""The DWH Helper's .env keys become the plugin's connections and Variables."""

from __future__ import annotations

import pytest

from include.common.legacy_env import LegacyEnvError, import_env

SEED_ENV = """
TITLE="DWH Helper"
DEBUG=false
DWH_DATABASE_URL="postgresql+psycopg2://etl:p%40ss@dwh.internal:5433/dwh"
DWH_MAX_WRITE_BATCH_BYTES=10000000        # 10MB batch limit
DWH_MAX_ROWS_PER_INSERT=1000
APPMETRICA_BASE_URL="https://api.appmetrica.yandex.net"
APPMETRICA_API_KEY="oauth-token-value"
APPMETRICA_APPLICATION_ID=123456789
APPMETRICA_POLL_INTERVAL_SECONDS=5
APPMETRICA_POLL_TIMEOUT_SECONDS=300
S3_ACCESS_KEY_ID="AKIAEXAMPLE"
S3_SECRET_ACCESS_KEY="s3-secret-value"
S3_REGION="us-east-1"
S3_ENDPOINT_URL="https://storage.yandexcloud.net"
S3_BUCKET_NAME="analytics"
AMPLITUDE_WEB_SECRET_KEY="web-secret-value"
AMPLITUDE_WEB_CLIENT_ID="web-api-key"
AMPLITUDE_MOBILE_SECRET_KEY="mobile-secret-value"
AMPLITUDE_MOBILE_CLIENT_ID="mobile-api-key"
LOGGING_LEVEL=INFO
"""


def test_the_original_env_maps_to_connections_and_variables():
    result = import_env(SEED_ENV)
    c = result.connections
    assert c["dwh_db"] == {
        "conn_id": "dwh_db",
        "conn_type": "postgres",
        "conn_host": "dwh.internal",
        "conn_port": 5433,
        "conn_schema": "dwh",
        "conn_login": "etl",
        "conn_password": "p@ss",
    }
    assert c["dwh_s3"]["conn_type"] == "aws" and c["dwh_s3"]["conn_login"] == "AKIAEXAMPLE"
    assert c["dwh_s3"]["conn_extra"] == {
        "region_name": "us-east-1",
        "endpoint_url": "https://storage.yandexcloud.net",
        "bucket_name": "analytics",
    }
    assert c["appmetrica_api"]["conn_password"] == "oauth-token-value"
    assert c["appmetrica_api"]["conn_extra"] == {"application_id": "123456789"}
    assert (c["amplitude_web"]["conn_login"], c["amplitude_web"]["conn_password"]) == (
        "web-api-key",
        "web-secret-value",
    )
    assert c["amplitude_mobile"]["conn_password"] == "mobile-secret-value"
    assert result.variables == {
        "dwh_max_rows_per_insert": "1000",
        "dwh_max_write_batch_bytes": "10000000",
        "appmetrica_poll_interval_seconds": "5",
        "appmetrica_poll_timeout_seconds": "300",
    }
    assert not [n for n in result.notes if n.startswith("ignored: DWH") or "secret-value" in n]
    assert (
        "set AIRFLOW__LOGGING__LOGGING_LEVEL=INFO in the Airflow environment for LOGGING_LEVEL"
        in result.notes
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./dwh.db", {"conn_type": "sqlite", "conn_host": "dwh.db"}),
        ("sqlite:////var/lib/dwh.db", {"conn_type": "sqlite", "conn_host": "/var/lib/dwh.db"}),
        ("mysql+pymysql://u:p@db:3306/dwh", {"conn_type": "mysql", "conn_host": "db", "conn_port": 3306}),
    ],
)
def test_database_urls(url, expected):
    conn = import_env(f"DWH_DATABASE_URL={url}").connections["dwh_db"]
    assert expected.items() <= conn.items()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("DWH_DATABASE_URL=sqlite://", "needs a file"),
        ("DWH_DATABASE_URL=oracle://h/db", "expected a sqlite"),
        ("DWH_DATABASE_URL=postgresql://u:secret@h:99999/db", "port"),
        ("DWH_MAX_ROWS_PER_INSERT=0", "at least 1"),
        ("S3_ENDPOINT_URL=minio:9000", r"http\(s\) URL"),
    ],
)
def test_bad_values_name_the_key_never_the_secret(line, message):
    with pytest.raises(LegacyEnvError, match=message) as error:
        import_env(line)
    assert line.split("=")[0] in str(error.value) and "secret" not in str(error.value)
