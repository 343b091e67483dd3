"""Where the dialog pipelines' settings live: connection ids, the worker pool, the AICO profile Variables.

The original service switched its database credentials by changing one value, ``AICO_HOST``: equal to
``AICO_HOST_TEST`` it used the test profile's database, equal to ``AICO_HOST_PROD`` the prod one's.
Here the three values are Airflow Variables and each profile's databases are connections named
``dialog_src_<profile>`` / ``dialog_dst_<profile>`` (:mod:`include.dialog.profiles` picks them).

Imported by DAG files at parse time: constants only.
"""

from __future__ import annotations

SOURCE_CONN_ID = "dialog_src"
"""people_customer_dialog (read only)."""
TARGET_CONN_ID = "dialog_dst"
"""prepared_conversations, and the AICO scenarios and knowledge items."""
WORKER_POOL = "dialog_etl"

AICO_HOST_VARIABLE = "AICO_HOST"
AICO_HOST_TEST_VARIABLE = "AICO_HOST_TEST"
AICO_HOST_PROD_VARIABLE = "AICO_HOST_PROD"

PROFILES = ("TEST", "PROD")
DEFAULT_PROFILE = "DEFAULT"
"""AICO_HOST matches neither profile host (or is not set): the plain dialog_src / dialog_dst."""


def profile_conn_id(base_conn_id: str, profile: str) -> str:
    """``dialog_dst`` + ``TEST`` -> ``dialog_dst_test``: the connection a profile uses instead."""
    return f"{base_conn_id}_{profile.lower()}"
