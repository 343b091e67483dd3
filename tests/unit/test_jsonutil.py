"""Stable JSON: equal data gives equal bytes and equal hashes."""

from __future__ import annotations

import datetime as dt
import decimal
import json

from include.common.jsonutil import content_hash, stable_json


def test_key_order_whitespace_and_escapes_do_not_change_the_hash():
    a = json.loads('{"b": [1, 2.0, {"z": "鞋", "a": null}], "a": "x"}')
    b = json.loads('{ "a":"x","b":[1,2,{"a":null,"z":"\\u978b"}] }')
    assert stable_json(a) == stable_json(b) == '{"a":"x","b":[1,2,{"a":null,"z":"鞋"}]}'
    assert content_hash(a) == content_hash(b)


def test_decimals_dates_and_real_changes():
    assert (
        stable_json({"p": decimal.Decimal("1.50")})
        == stable_json({"p": decimal.Decimal("1.5")})
        == '{"p":"1.5"}'
    )
    assert stable_json({"p": decimal.Decimal("100.00")}) == '{"p":"100"}'
    assert stable_json({"d": dt.date(2024, 6, 1), "t": dt.datetime(2024, 6, 1, 8)}) == (
        '{"d":"2024-06-01","t":"2024-06-01 08:00:00"}'
    )
    assert content_hash({"p": 1.5}) != content_hash({"p": 1.51})
