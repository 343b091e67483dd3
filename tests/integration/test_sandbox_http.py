"""The simulator framework over real HTTP: routing, path params, queued faults, latency."""

from __future__ import annotations

import time

import httpx

from sandbox.http import Response, SimulatedApi


def make_api() -> SimulatedApi:
    api = SimulatedApi("demo")

    @api.route("GET", "/items/<item_id>")
    def item(request):
        return Response.json({"id": request.params["item_id"], "q": request.query.get("q"), "名": "鞋"})

    @api.route("POST", "/echo")
    def echo(request):
        return Response.json({"got": request.json(), "token": request.header("token")}, status=201)

    return api


def test_routes_params_and_json_over_real_http():
    api = make_api()
    with api.serve() as base:
        got = httpx.get(f"{base}/items/42", params={"q": "x"})
        assert got.status_code == 200 and got.json() == {"id": "42", "q": "x", "名": "鞋"}
        posted = httpx.post(f"{base}/echo", json={"a": [1, 2]}, headers={"token": "t1"})
        assert posted.status_code == 201 and posted.json() == {"got": {"a": [1, 2]}, "token": "t1"}
        assert httpx.get(f"{base}/nope").status_code == 404
        assert httpx.delete(f"{base}/echo").status_code == 405
    assert [r.path for r in api.requests] == ["/items/42", "/echo", "/nope", "/echo"]


def test_queued_faults_then_recovery_and_latency():
    api = make_api()
    with api.serve() as base:
        api.faults.fail_next(429, times=2, headers={"Retry-After": "3"}, path="/items/1")
        api.faults.fail_next(503)
        first = httpx.get(f"{base}/items/1")
        assert first.status_code == 429 and first.headers["Retry-After"] == "3"
        assert httpx.post(f"{base}/echo", json={}).status_code == 503  # the path-free fault
        assert httpx.get(f"{base}/items/1").status_code == 429
        assert httpx.get(f"{base}/items/1").status_code == 200
        api.faults.latency_s = 0.2
        start = time.perf_counter()
        assert httpx.get(f"{base}/items/2").status_code == 200
        assert time.perf_counter() - start >= 0.2
