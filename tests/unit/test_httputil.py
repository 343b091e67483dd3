"""The base URL of an http connection, read as Airflow's HttpHook reads it."""

from __future__ import annotations

import pytest

from include.common.httputil import connection_base_url
from tests.conftest import set_connection

DEFAULT = "https://api.example.com"


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        (None, None, None, DEFAULT),
        ("", "http", None, DEFAULT),
        ("clientapi.phonenet.io", None, None, "http://clientapi.phonenet.io"),
        ("clientapi.phonenet.io", "https", None, "https://clientapi.phonenet.io"),
        ("127.0.0.1", "http", 18765, "http://127.0.0.1:18765"),
        ("127.0.0.1", "", 18765, "http://127.0.0.1:18765"),
        ("https://eu.example/", None, None, "https://eu.example"),
        ("http://127.0.0.1:18765/", "https", 18765, "http://127.0.0.1:18765"),  # the host's scheme wins
        ("http://127.0.0.1:18765", None, 9999, "http://127.0.0.1:18765"),  # and its port
        ("https://gw.example/callio", None, 8443, "https://gw.example:8443/callio"),
        ("[::1]", None, 8080, "http://[::1]:8080"),
    ],
)
def test_connection_base_url_follows_the_http_hook(host, schema, port, expected):
    assert connection_base_url(host, schema, port, default=DEFAULT) == expected


@pytest.mark.parametrize(
    ("host", "schema", "port"),
    [("h.example", None, 8080), ("h.example", "https", None), ("https://h.example", None, None)],
)
def test_airflows_http_hook_reads_the_same_connection_the_same_way(monkeypatch, host, schema, port):
    from airflow.providers.http.hooks.http import HttpHook

    set_connection(monkeypatch, "some_api", "http", host=host, schema=schema, port=port)
    hook = HttpHook(http_conn_id="some_api")
    hook.get_conn()
    assert connection_base_url(host, schema, port, default=DEFAULT) == hook.base_url
