"""The legacy .env importer: both syntaxes, the dialog mapping, notes, errors and the CLI."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from include.common import legacy_env, settings
from include.common.legacy_env import LegacyEnvError, import_env, parse_env
from include.dialog import legacy_env as dialog_legacy_env

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = ("Main#Secret-1", "Test-Secret-2", "TestDst-Secret-3", "Prod-Secret-4", "Src-Override-5")

SEED_ENV = f"""\
# Dialog ETL backend settings, both syntaxes as the old loader accepted them
url=jdbc:mysql://db.example.com:3307/dialog?serverTimezone=Asia/Shanghai
username: etl_user
password="{PASSWORDS[0]}"

export SRC_DB_HOST=src.example.com:3310
SRC_DB_NAME = dialog_src_db
DST_DB_HOST: dst.example.com
DST_DB_NAME: dialog_dst_db

AICO_HOST=20.17.0.2
AICO_HOST_TEST=20.17.0.1
AICO_HOST_PROD=20.17.0.2
TEST_URL=jdbc:mysql://test.example.com/test_db?serverTimezone=Asia/Shanghai
TEST_USERNAME=test_user
TEST_PASSWORD='{PASSWORDS[1]}'
TEST_DST_URL=jdbc:mysql://testdst.example.com:3308/test_dst_db
TEST_DST_PASSWORD={PASSWORDS[2]}
PROD_URL: jdbc:mysql://prod.example.com:3306/prod_db
PROD_USERNAME: prod_user
PROD_PASSWORD: {PASSWORDS[3]}

ETL_CRON=0 1 * * *
ETL_MAX_WORKERS=6   # one worker per group_code
APP_TIMEZONE=Asia/Shanghai
LOG_LEVEL=INFO
"""


def conn(result, conn_id: str) -> dict:
    return result.connections[conn_id]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "include.common.legacy_env", *args],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_no_passwords(text: str, passwords=PASSWORDS) -> None:
    for password in passwords:
        assert password not in text


# --------------------------------------------------------------------------------------------- parsing


def test_parse_accepts_both_syntaxes_quotes_export_and_comments():
    entries = parse_env(
        textwrap.dedent("""\
        \ufeff# comment
        A=1
        b: two words
        export C="quoted # not a comment"
        D='single'   # trailing comment
        E=value # inline comment
        F=pass#word
        G = "esc\\"aped"

        H:
    """)
    )
    assert [(e.key, e.value, e.line) for e in entries] == [
        ("A", "1", 2),
        ("b", "two words", 3),
        ("C", "quoted # not a comment", 4),
        ("D", "single", 5),
        ("E", "value", 6),
        ("F", "pass#word", 7),
        ("G", 'esc"aped', 8),
        ("H", "", 10),
    ]


def test_keys_are_case_insensitive_and_the_last_one_wins_with_a_note():
    result = import_env("URL=jdbc:mysql://a.example/x\nETL_MAX_WORKERS=2\netl_max_workers=3\n")
    assert conn(result, "dialog_src")["conn_host"] == "a.example"
    assert result.pools["dialog_etl"]["pool_slot"] == 3
    assert "etl_max_workers is set on lines 2 and 3: line 3 wins" in result.notes


# ---------------------------------------------------------------------------------------- mapping


def test_jdbc_url_maps_to_dialog_src_and_dst():
    result = import_env(
        f"url=jdbc:mysql://db.example.com/dialog?serverTimezone=Asia/Shanghai\n"
        f"username=etl\npassword={PASSWORDS[0]}\n"
    )
    for conn_id in ("dialog_src", "dialog_dst"):
        assert conn(result, conn_id) == {
            "conn_id": conn_id,
            "conn_type": "mysql",
            "conn_host": "db.example.com",
            "conn_port": 3306,
            "conn_schema": "dialog",
            "conn_login": "etl",
            "conn_password": PASSWORDS[0],
        }
    assert result.notes == []  # serverTimezone is Shanghai: nothing to warn about, and not in the connection


def test_seed_file_maps_overrides_profiles_pool_and_variables():
    result = import_env(SEED_ENV)

    src, dst = conn(result, "dialog_src"), conn(result, "dialog_dst")
    assert (src["conn_host"], src["conn_port"], src["conn_schema"]) == (
        "src.example.com",
        3310,
        "dialog_src_db",
    )
    # a host without a port keeps the url's port
    assert (dst["conn_host"], dst["conn_port"], dst["conn_schema"]) == (
        "dst.example.com",
        3307,
        "dialog_dst_db",
    )
    assert src["conn_login"] == dst["conn_login"] == "etl_user"
    assert src["conn_password"] == dst["conn_password"] == PASSWORDS[0]

    src_test, dst_test = conn(result, "dialog_src_test"), conn(result, "dialog_dst_test")
    # SRC_DB_* are given: they win over TEST_URL for the source, so the test profile reads the same
    # source as the default one
    assert {k: v for k, v in src_test.items() if k != "conn_id"} == {
        k: v for k, v in src.items() if k != "conn_id"
    }
    # TEST_DST_URL overrides the test target only; login falls back to TEST_USERNAME
    assert (dst_test["conn_host"], dst_test["conn_port"], dst_test["conn_schema"]) == (
        "testdst.example.com",
        3308,
        "test_dst_db",
    )
    assert (dst_test["conn_login"], dst_test["conn_password"]) == ("test_user", PASSWORDS[2])

    # SRC_DB_* and DST_DB_* both given, no PROD_DST_URL: PROD_URL applies to neither side
    assert conn(result, "dialog_src_prod")["conn_host"] == "src.example.com"
    assert conn(result, "dialog_dst_prod")["conn_host"] == "dst.example.com"
    assert (
        "dialog_dst_prod = dialog_dst: DST_DB_* are given, so PROD_URL does not apply to it" in result.notes
    )

    assert result.variables == {
        "AICO_HOST": "20.17.0.2",
        "AICO_HOST_TEST": "20.17.0.1",
        "AICO_HOST_PROD": "20.17.0.2",
    }
    assert result.pools == {
        "dialog_etl": {
            "pool_name": "dialog_etl",
            "pool_slot": 6,
            "pool_description": dialog_legacy_env.DIALOG_POOL_DESCRIPTION,
        }
    }
    assert "AICO_HOST selects the prod profile (dialog_src_prod / dialog_dst_prod)" in result.notes
    assert not any(note.startswith(("ignored", "warning")) for note in result.notes)


def test_profile_url_applies_to_both_sides_without_src_dst_overrides():
    result = import_env(
        "url=jdbc:mysql://db.example/dialog\nusername=u\npassword=p-secret\n"
        f"PROD_URL=jdbc:mysql://prod.example.com:3306/prod_db\nPROD_USERNAME=prod_user\n"
        f"PROD_PASSWORD={PASSWORDS[3]}\nDST_DB_NAME=dialog_out\n"
    )
    assert conn(result, "dialog_src_prod")["conn_host"] == "prod.example.com"
    # DST_DB_* given: the prod target stays the default target
    assert (conn(result, "dialog_dst_prod")["conn_host"], conn(result, "dialog_dst_prod")["conn_schema"]) == (
        "db.example",
        "dialog_out",
    )
    result = import_env(
        f"PROD_URL=jdbc:mysql://prod.example.com:3306/prod_db\nPROD_USERNAME=prod_user\n"
        f"PROD_PASSWORD={PASSWORDS[3]}\n"
    )
    for conn_id in ("dialog_src_prod", "dialog_dst_prod"):
        prod = conn(result, conn_id)
        assert (prod["conn_host"], prod["conn_schema"], prod["conn_login"], prod["conn_password"]) == (
            "prod.example.com",
            "prod_db",
            "prod_user",
            PASSWORDS[3],
        )


def test_test_dst_url_with_its_own_credentials():
    result = import_env(
        "TEST_URL=jdbc:mysql://t.example/a\nTEST_USERNAME=u1\nTEST_PASSWORD=p1-secret\n"
        "TEST_DST_URL=jdbc:mysql://d.example:3309/b\nTEST_DST_USERNAME=u2\nTEST_DST_PASSWORD=p2-secret\n"
    )
    assert (conn(result, "dialog_src_test")["conn_login"], conn(result, "dialog_src_test")["conn_host"]) == (
        "u1",
        "t.example",
    )
    dst = conn(result, "dialog_dst_test")
    assert (dst["conn_host"], dst["conn_port"], dst["conn_login"], dst["conn_password"]) == (
        "d.example",
        3309,
        "u2",
        "p2-secret",
    )
    assert "dialog_src" not in result.connections


def test_prod_dst_url_alone_creates_only_the_prod_target():
    result = import_env(
        "PROD_DST_URL=jdbc:mysql://pd.example/scen\nPROD_USERNAME=pu\nPROD_PASSWORD=pp-secret\n"
    )
    assert list(result.connections) == ["dialog_dst_prod"]
    assert conn(result, "dialog_dst_prod")["conn_login"] == "pu"


def test_overrides_without_url_need_a_host():
    result = import_env("SRC_DB_HOST=only-src.example:3301\nSRC_DB_NAME=s\nusername=u\npassword=pw-secret\n")
    assert conn(result, "dialog_src") == {
        "conn_id": "dialog_src",
        "conn_type": "mysql",
        "conn_host": "only-src.example",
        "conn_port": 3301,
        "conn_schema": "s",
        "conn_login": "u",
        "conn_password": "pw-secret",
    }
    assert "dialog_dst" not in result.connections
    with pytest.raises(LegacyEnvError, match=r"line 1 DST_DB_NAME: needs url or DST_DB_HOST"):
        import_env("DST_DB_NAME=d\n")


def test_src_user_and_password_override_the_shared_credentials():
    result = import_env(
        f"url=jdbc:mysql://h/db\nusername=u\npassword={PASSWORDS[0]}\n"
        f"SRC_DB_USER=reader\nSRC_DB_PASSWORD={PASSWORDS[4]}\n"
    )
    assert (conn(result, "dialog_src")["conn_login"], conn(result, "dialog_src")["conn_password"]) == (
        "reader",
        PASSWORDS[4],
    )
    assert (conn(result, "dialog_dst")["conn_login"], conn(result, "dialog_dst")["conn_password"]) == (
        "u",
        PASSWORDS[0],
    )


def test_max_workers_sizes_the_pool_only_when_present():
    result = import_env("ETL_MAX_WORKERS=12\n")
    assert result.variables == {}
    assert result.pools["dialog_etl"]["pool_slot"] == 12
    empty = import_env("url=jdbc:mysql://h/db\n")
    assert empty.variables == {} and empty.pools == {}


def test_notes_for_cron_timezones_and_log_level():
    result = import_env(
        "url=jdbc:mysql://h/db?serverTimezone=UTC&useSSL=false\n"
        "ETL_CRON=30  2 * * *\nAPP_TIMEZONE=Europe/Berlin\nLOG_LEVEL=warn\n"
    )
    assert (
        "set DIALOG_ETL_CRON='30 2 * * *' in the scheduler/dag-processor environment "
        "(read as Asia/Shanghai time)" in result.notes
    )
    assert any(
        n.startswith("warning: url has serverTimezone=UTC") and "Asia/Shanghai local time" in n
        for n in result.notes
    )
    assert any(n.startswith("warning: APP_TIMEZONE=Europe/Berlin") for n in result.notes)
    assert (
        "set AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING in the Airflow environment for LOG_LEVEL" in result.notes
    )
    assert "ignored: url parameter useSSL" in result.notes


def test_default_cron_and_shanghai_need_no_change():
    result = import_env("ETL_CRON=0 1 * * *\nAPP_TIMEZONE=Asia/Shanghai\n")
    assert not any("DIALOG_ETL_CRON" in n or n.startswith("warning") for n in result.notes)


def test_unknown_keys_are_reported_by_name_only():
    result = import_env("CALLIO_SECRET_THING=super-hidden-value\nurl=jdbc:mysql://h/db\n")
    assert "ignored: CALLIO_SECRET_THING" in result.notes
    assert not any("super-hidden-value" in n for n in result.notes)


def test_registry_lets_other_pipelines_claim_keys(monkeypatch):
    monkeypatch.setattr(legacy_env, "_REGISTRY", dict(legacy_env._REGISTRY))

    @legacy_env.register("EXAMPLE_API_KEY")
    def example(env, result):
        result.set_variable("example_api_key", env.value("EXAMPLE_API_KEY"), secret=True)

    result = import_env("EXAMPLE_API_KEY=hidden-api-key\n")
    assert result.variables == {"example_api_key": "hidden-api-key"}
    assert not any("EXAMPLE_API_KEY" in n for n in result.notes)
    assert "variable example_api_key = ***" in legacy_env.describe(result)


def test_describe_masks_passwords():
    lines = "\n".join(legacy_env.describe(import_env(SEED_ENV)))
    assert (
        "connection dialog_src: mysql src.example.com:3310/dialog_src_db login=etl_user password=***" in lines
    )
    assert_no_passwords(lines)


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"username=u\nurl=postgresql://h/db?password={PASSWORDS[0]}\n",
            r"^line 2 url: expected jdbc:mysql://",
        ),
        ("A=1\nETL_MAX_WORKERS=four\n", r"^line 2 ETL_MAX_WORKERS: must be a whole number"),
        ("ETL_MAX_WORKERS=0\n", r"^line 1 ETL_MAX_WORKERS: must be a whole number of at least 1"),
        (
            "url=jdbc:mysql://h/db\n\nSRC_DB_HOST=src:33o6\n",
            r"^line 3 SRC_DB_HOST: the port must be a number",
        ),
        ("url=jdbc:mysql://h:99999/db\n", r"^line 1 url: the port must be a number"),
        ("url=jdbc:mysql://:3306/db\n", r"^line 1 url: has no host name"),
        ("TEST_URL=mysql://h/db\n", r"^line 1 TEST_URL: expected jdbc:mysql://"),
        ("ETL_CRON=every day\n", r"^line 1 ETL_CRON: is not a cron expression"),
        ("APP_TIMEZONE=Mars/Olympus\n", r"^line 1 APP_TIMEZONE: is not a known time zone"),
        ("LOG_LEVEL=loud\n", r"^line 1 LOG_LEVEL: must be one of"),
        (f'password="{PASSWORDS[0]}\n', r"^line 1 password: the quoted value has no closing quote"),
        ("# ok\nthis line is not a setting\n", r"^line 2: expected KEY=value or key: value"),
    ],
)
def test_bad_input_names_the_key_and_line(text, expected):
    with pytest.raises(LegacyEnvError, match=expected) as excinfo:
        import_env(text)
    assert_no_passwords(str(excinfo.value))


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_output_merges_into_an_existing_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(SEED_ENV, encoding="utf-8")
    output = tmp_path / "airflow_settings.local.yaml"
    output.write_text(
        textwrap.dedent("""\
        airflow:
          connections:
            - conn_id: dialog_src
              conn_type: sqlite
              conn_host: dialog_src.sqlite
            - conn_id: callio_api
              conn_type: http
              conn_host: https://clientapi.phonenet.io
          pools:
            - pool_name: duckdb_writer
              pool_slot: 1
          variables:
            - variable_name: API_TIME_SLICE_MS
              variable_value: "3600000"
    """),
        encoding="utf-8",
    )

    proc = run_cli(str(env_file), "--output", str(output))

    assert proc.returncode == 0, proc.stderr
    written = settings.load(output)["airflow"]
    connections = {c["conn_id"]: c for c in written["connections"]}
    assert list(connections)[:2] == ["dialog_src", "callio_api"]  # replaced in place, unrelated kept
    assert connections["dialog_src"]["conn_type"] == "mysql"
    assert connections["dialog_src"]["conn_password"] == PASSWORDS[0]
    assert connections["callio_api"]["conn_host"] == "https://clientapi.phonenet.io"
    assert {p["pool_name"]: p["pool_slot"] for p in written["pools"]} == {"duckdb_writer": 1, "dialog_etl": 6}
    variables = {v["variable_name"]: v["variable_value"] for v in written["variables"]}
    assert variables["API_TIME_SLICE_MS"] == "3600000" and "ETL_MAX_WORKERS" not in variables
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert (
        "connection dialog_dst_test: mysql testdst.example.com:3308/test_dst_db login=test_user "
        "password=***" in proc.stdout
    )
    assert f"wrote {output}" in proc.stdout
    assert_no_passwords(proc.stdout + proc.stderr)
    # the written file is valid Astro CLI YAML
    assert yaml.safe_load(output.read_text())["airflow"]["connections"][0]["conn_id"] == "dialog_src"


def test_cli_without_output_only_reports(tmp_path):
    env_file = tmp_path / "legacy.env"
    env_file.write_text(SEED_ENV + "MYSTERY_TOKEN=zzz-hidden\n", encoding="utf-8")
    proc = run_cli(str(env_file))
    assert proc.returncode == 0, proc.stderr
    assert "note: ignored: MYSTERY_TOKEN" in proc.stdout
    assert "nothing written" in proc.stdout
    assert_no_passwords(proc.stdout + proc.stderr, (*PASSWORDS, "zzz-hidden"))
    assert list(tmp_path.iterdir()) == [env_file]


def test_cli_reports_errors_with_line_numbers_and_no_values(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"password={PASSWORDS[0]}\nurl=jdbc:mysql://h:port/db\n", encoding="utf-8")
    proc = run_cli(str(env_file), "--output", str(tmp_path / "out.yaml"))
    assert proc.returncode == 1
    assert "line 2 url: the port must be a number" in proc.stderr
    assert_no_passwords(proc.stdout + proc.stderr)
    assert not (tmp_path / "out.yaml").exists()
