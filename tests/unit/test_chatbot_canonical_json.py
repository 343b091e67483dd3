"""canonical_json parses with msgspec but must write exactly what ``json.dumps(json.loads(...),
sort_keys=True)`` always wrote, and reject what json rejects."""

from __future__ import annotations

import json

import pytest

from include.chatbot.analytics import canonical_json

CASES = [
    None,
    "",
    "{}",
    "null",
    "0",
    "false",
    "[]",
    "[1, 2]",
    '{"b": 1, "a": {"d": [1.5, 1e-07, 0.000001], "c": null}}',
    '{"x": 123456789012345678901234567890, "y": -9223372036854775809}',
    '{"x": 1e400, "y": NaN, "z": -Infinity}',
    '"\\ud800"',
    '{"a": 1, "a": 2}',
    '{"s": "sed\\u00e3 sedã 😀 \\ud83d\\ude00 \\"q\\" \\\\ \\n"}',
    '{"f": 12345678901234567.0, "g": -0.0, "h": 1E5, "i": 0.1, "j": 5e-324, "k": 1.7976931348623157e308}',
    '  {"a" : 1 }  ',
    '{"\\u00e9": 1, "e": 2, "z": 3, "Z": 4, "": 5}',
]


@pytest.mark.parametrize("text", CASES)
def test_the_same_text_as_python_json(text):
    expected = json.dumps((json.loads(text) if text else None) or {}, sort_keys=True)
    assert canonical_json(text) == expected


@pytest.mark.parametrize("text", ["{", '{"a":}', '{"a": 1} x', "{'a': 1}"])
def test_invalid_json_is_refused_as_json_refuses_it(text):
    with pytest.raises(json.JSONDecodeError):
        canonical_json(text)
