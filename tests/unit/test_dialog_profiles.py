"""The AICO_HOST profile rules, case by case: which connections a run uses."""

from __future__ import annotations

import pytest

from include.common.legacy_env import import_env
from include.dialog.profiles import ProfileError, Resolution, resolve

TEST_HOST, PROD_HOST = "20.17.0.1", "20.17.0.2"
BOTH = {
    "dialog_src",
    "dialog_dst",
    "dialog_src_test",
    "dialog_dst_test",
    "dialog_src_prod",
    "dialog_dst_prod",
}
DST_ONLY = {"dialog_src", "dialog_dst", "dialog_dst_test", "dialog_dst_prod"}


@pytest.mark.parametrize(
    ("aico_host", "host_test", "host_prod", "existing", "expected"),
    [
        # AICO_HOST equal to AICO_HOST_TEST / AICO_HOST_PROD: that profile, source and target
        (TEST_HOST, TEST_HOST, PROD_HOST, BOTH, ("TEST", "dialog_src_test", "dialog_dst_test")),
        (PROD_HOST, TEST_HOST, PROD_HOST, BOTH, ("PROD", "dialog_src_prod", "dialog_dst_prod")),
        # blanks around a value do not matter
        (f" {PROD_HOST} ", TEST_HOST, f"{PROD_HOST}\n", BOTH, ("PROD", "dialog_src_prod", "dialog_dst_prod")),
        # neither: the default connections, even when profile connections exist
        ("20.17.9.9", TEST_HOST, PROD_HOST, BOTH, ("DEFAULT", "dialog_src", "dialog_dst")),
        # AICO_HOST not set, or set without the profile hosts
        (None, TEST_HOST, PROD_HOST, BOTH, ("DEFAULT", "dialog_src", "dialog_dst")),
        ("", TEST_HOST, PROD_HOST, BOTH, ("DEFAULT", "dialog_src", "dialog_dst")),
        (TEST_HOST, None, None, BOTH, ("DEFAULT", "dialog_src", "dialog_dst")),
        # only one profile host defined
        (PROD_HOST, None, PROD_HOST, BOTH, ("PROD", "dialog_src_prod", "dialog_dst_prod")),
        (PROD_HOST, TEST_HOST, None, BOTH, ("DEFAULT", "dialog_src", "dialog_dst")),
        # <PROFILE>_DST_URL alone moved only the target: the source stays dialog_src
        (TEST_HOST, TEST_HOST, PROD_HOST, DST_ONLY, ("TEST", "dialog_src", "dialog_dst_test")),
        (PROD_HOST, TEST_HOST, PROD_HOST, DST_ONLY, ("PROD", "dialog_src", "dialog_dst_prod")),
    ],
)
def test_profile_rules(aico_host, host_test, host_prod, existing, expected):
    resolution = resolve(aico_host, host_test, host_prod, existing.__contains__)
    assert (resolution.profile, resolution.source_conn_id, resolution.target_conn_id) == expected
    assert resolution.aico_host == (aico_host.strip() if aico_host and aico_host.strip() else None)


@pytest.mark.parametrize(
    ("aico_host", "existing", "missing"),
    [
        (TEST_HOST, {"dialog_src", "dialog_dst"}, "dialog_dst_test"),
        (TEST_HOST, {"dialog_src", "dialog_dst", "dialog_src_test"}, "dialog_dst_test"),
        (PROD_HOST, {"dialog_src", "dialog_dst", "dialog_src_test", "dialog_dst_test"}, "dialog_dst_prod"),
    ],
)
def test_a_selected_profile_without_its_target_connection_is_an_error_naming_it(aico_host, existing, missing):
    with pytest.raises(ProfileError, match=f"connection {missing} does not exist") as info:
        resolve(aico_host, TEST_HOST, PROD_HOST, existing.__contains__)
    assert f"AICO_HOST='{aico_host}'" in str(info.value)


def test_equal_profile_hosts_are_refused():
    with pytest.raises(ProfileError, match="AICO_HOST_TEST and AICO_HOST_PROD are both '20.17.0.1'"):
        resolve(TEST_HOST, TEST_HOST, TEST_HOST, BOTH.__contains__)


def test_custom_base_connection_ids():
    resolution = resolve(
        TEST_HOST,
        TEST_HOST,
        PROD_HOST,
        {"a_test", "b_test"}.__contains__,
        source_conn_id="a",
        target_conn_id="b",
    )
    assert resolution == Resolution("TEST", "a_test", "b_test", TEST_HOST)


ENV_BASE = "url=jdbc:mysql://db.example/dialog\nusername=u\npassword=p-secret\n"
ENV_HOSTS = f"AICO_HOST_TEST={TEST_HOST}\nAICO_HOST_PROD={PROD_HOST}\n"


@pytest.mark.parametrize(
    ("env", "aico_host", "expected_hosts"),
    [
        # <PROFILE>_URL: both sides on the profile's server
        ("TEST_URL=jdbc:mysql://t.example/t\n", TEST_HOST, ("t.example", "t.example")),
        # + <PROFILE>_DST_URL: the target moves again
        (
            "TEST_URL=jdbc:mysql://t.example/t\nTEST_DST_URL=jdbc:mysql://td.example/td\n",
            TEST_HOST,
            ("t.example", "td.example"),
        ),
        # <PROFILE>_DST_URL alone: only the target
        ("PROD_DST_URL=jdbc:mysql://pd.example/pd\n", PROD_HOST, ("db.example", "pd.example")),
        # SRC_DB_* given: the source stays there under the profile too
        (
            "SRC_DB_HOST=src.example\nPROD_URL=jdbc:mysql://p.example/p\n",
            PROD_HOST,
            ("src.example", "p.example"),
        ),
        # DST_DB_* given: the target stays there, unless <PROFILE>_DST_URL moves it
        (
            "DST_DB_HOST=dst.example\nPROD_URL=jdbc:mysql://p.example/p\n",
            PROD_HOST,
            ("p.example", "dst.example"),
        ),
        (
            "DST_DB_HOST=dst.example\nPROD_URL=jdbc:mysql://p.example/p\nPROD_DST_URL=jdbc:mysql://pd.example/pd\n",
            PROD_HOST,
            ("p.example", "pd.example"),
        ),
        # AICO_HOST matching no profile: the default connections whatever else is defined
        ("TEST_URL=jdbc:mysql://t.example/t\n", "10.0.0.1", ("db.example", "db.example")),
    ],
)
def test_imported_env_then_resolved(env, aico_host, expected_hosts):
    """From the original's .env keys to the servers a run uses: importer and resolver together."""
    result = import_env(ENV_BASE + ENV_HOSTS + f"AICO_HOST={aico_host}\n" + env)
    variables = result.variables
    resolution = resolve(
        variables["AICO_HOST"],
        variables["AICO_HOST_TEST"],
        variables["AICO_HOST_PROD"],
        result.connections.__contains__,
    )
    hosts = tuple(
        result.connections[c]["conn_host"] for c in (resolution.source_conn_id, resolution.target_conn_id)
    )
    assert hosts == expected_hosts
