"""Which scenarios row's AICO credentials are used, case by case (the original service's three rules)."""

from __future__ import annotations

import pytest

from include.aico.scenarios import ConfigRow, ScenarioError, select_config_row

TEST_HOST, PROD_HOST, OTHER = "20.17.0.1", "20.17.0.2", "10.0.0.9"


def rows(*specs: tuple[str, str | None]) -> list[ConfigRow]:
    return [ConfigRow(n + 1, code, host) for n, (code, host) in enumerate(specs)]


PLAIN = rows(("sales", None), ("sales_test", None))
OWN_ONLY = rows(("sales", None))
BOUND_PROD_TO_TEST = rows(("sales", TEST_HOST), ("sales_test", None))
BOUND_TEST_TO_PROD = rows(("sales", None), ("sales_test", PROD_HOST))
BOTH_BOUND_SAME = rows(("sales", OTHER), ("sales_test", OTHER))
WITH_OTHERS = rows(("sales_extra", TEST_HOST), ("service", None), ("sales", None), ("sales_test", None))


@pytest.mark.parametrize(
    ("candidates", "profile", "aico_host", "expected_code", "reason"),
    [
        # rule 2: the profile's row
        (PLAIN, "TEST", TEST_HOST, "sales_test", "TEST profile: sales_test"),
        (PLAIN, "PROD", PROD_HOST, "sales", "PROD profile: sales"),
        # no profile: the scenario's own row
        (PLAIN, "DEFAULT", OTHER, "sales", "DEFAULT profile: sales"),
        (PLAIN, "DEFAULT", None, "sales", "DEFAULT profile: sales"),
        # TEST without a _test row: the scenario's own row
        (OWN_ONLY, "TEST", TEST_HOST, "sales", "TEST profile, no sales_test row: the scenario's own row"),
        (OWN_ONLY, "PROD", PROD_HOST, "sales", "PROD profile: sales"),
        # rule 1: aico_host == AICO_HOST wins over the profile's preference
        (BOUND_PROD_TO_TEST, "TEST", TEST_HOST, "sales", "aico_host matches AICO_HOST (sales)"),
        (BOUND_TEST_TO_PROD, "PROD", PROD_HOST, "sales_test", "aico_host matches AICO_HOST (sales_test)"),
        (BOUND_TEST_TO_PROD, "DEFAULT", PROD_HOST, "sales_test", "aico_host matches AICO_HOST (sales_test)"),
        # a row bound to another host is not a match: the profile's rule applies
        (BOUND_PROD_TO_TEST, "PROD", PROD_HOST, "sales", "PROD profile: sales"),
        (BOUND_TEST_TO_PROD, "TEST", TEST_HOST, "sales_test", "TEST profile: sales_test"),
        # several rows match: the profile's preference among them
        (BOTH_BOUND_SAME, "TEST", OTHER, "sales_test", "aico_host matches AICO_HOST (sales_test)"),
        (BOTH_BOUND_SAME, "DEFAULT", OTHER, "sales", "aico_host matches AICO_HOST (sales)"),
        # rows of other scenarios are never candidates, even when their host matches
        (WITH_OTHERS, "TEST", TEST_HOST, "sales_test", "TEST profile: sales_test"),
        # blanks around the host do not matter; an empty AICO_HOST matches nothing
        (rows(("sales", f" {TEST_HOST} "), ("sales_test", None)), "TEST", TEST_HOST, "sales", None),
        (rows(("sales", ""), ("sales_test", None)), "TEST", "", "sales_test", "TEST profile: sales_test"),
    ],
)
def test_config_row_rules(candidates, profile, aico_host, expected_code, reason):
    choice = select_config_row("sales", candidates, profile, aico_host)
    assert choice.row.scenario_code == expected_code
    if reason is not None:
        assert choice.reason == reason


def test_no_row_for_the_scenario_is_an_error():
    with pytest.raises(ScenarioError, match="scenario 'sales' has no configuration row"):
        select_config_row("sales", rows(("sales_test", None)), "PROD", PROD_HOST)


def test_a_row_repr_hides_the_password():
    row = ConfigRow(1, "sales", username="bot", password="s3cret-pw")
    assert "s3cret-pw" not in repr(row)
