"""The retry settings every DAG shares, and the environment override of their delay."""

from __future__ import annotations

import pendulum
import pytest

from include.common.dag_defaults import RETRY_DELAY_ENV, default_args


def test_the_dags_own_delay_without_the_override(monkeypatch):
    monkeypatch.delenv(RETRY_DELAY_ENV, raising=False)
    args = default_args(retry_delay_minutes=5, retries=3)
    assert args["retry_delay"] == pendulum.duration(minutes=5)
    assert args["retries"] == 3


def test_the_override_sets_every_dags_delay_in_seconds(monkeypatch):
    monkeypatch.setenv(RETRY_DELAY_ENV, "2.5")
    assert default_args(retry_delay_minutes=5)["retry_delay"] == pendulum.duration(seconds=2.5)


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_override_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(RETRY_DELAY_ENV, value)
    with pytest.raises(ValueError, match=RETRY_DELAY_ENV):
        default_args()
