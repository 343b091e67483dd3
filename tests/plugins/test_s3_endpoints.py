"""``/dwh-helper/s3/...`` over real HTTP, against the local S3 store (moto's server) through boto3.

What the endpoints wrote is checked in the bucket itself, with a boto3 client of its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dwh_helper.services import Services, Settings
from include.dwh.config import S3_CONN_ID
from include.dwh.s3 import S3Download, S3Store
from include.dwh.s3_upload import MIB, MIN_PART_SIZE
from sandbox.simulators.s3 import (
    SECRET_ACCESS_KEY,
    airflow_connection,
    s3_client,
)
from tests.conftest import new_bucket, set_connection
from tests.plugins.conftest import PluginServer


@dataclass
class S3Api:
    """The ``/s3`` endpoints of one served plugin, and the bucket and store behind them."""

    client: httpx.Client
    plugin: PluginServer
    s3_endpoint: str
    bucket: str
    store: S3Store | None = None  # None: the one the plugin builds from the Airflow connection

    @property
    def base(self) -> str:
        return f"{self.plugin.base}/s3"

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(f"{self.base}/{path}", params=params)

    def send(
        self,
        method: str,
        path: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        **params: Any,
    ) -> httpx.Response:
        """``data`` as the form field ``file`` of a multipart body, as ``curl -F file=@...`` sends it."""
        files = {"file": ("upload.bin", data, content_type)}
        return self.client.request(method, f"{self.base}/{path}", params=params, files=files)

    def upload(self, key: str, data: bytes) -> httpx.Response:
        return self.send("POST", "upload", data, key=key)

    def info(self, key: str) -> dict[str, Any]:
        return self.get("object-info", key=key).json()

    def stored(self, key: str) -> bytes:
        """The object as the bucket holds it, read without the endpoints."""
        return s3_client(self.s3_endpoint).get_object(Bucket=self.bucket, Key=key)["Body"].read()


class RecordingStore(S3Store):
    """The store, keeping every download it opens, to see whether its connection to S3 was closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.downloads: list[S3Download] = []

    def download(self, key: str) -> S3Download:
        opened = super().download(key)
        self.downloads.append(opened)
        return opened

    def still_open(self) -> list[str]:
        """Keys of the downloads whose HTTP response from S3 is not closed."""
        return [opened.key for opened in self.downloads if not opened.body._raw_stream.closed]


@pytest.fixture
def s3_api(serve, client, s3_endpoint) -> Callable[..., S3Api]:
    """Factory: serve the plugin on a new bucket, with multipart from 5 MiB on (so a few MiB exercise
    parts and server-side copies) and ``Settings(**settings)``."""

    def start(*, versioned: bool = False, **settings: int) -> S3Api:
        bucket = new_bucket(s3_endpoint, versioned=versioned)
        store = RecordingStore(
            s3_client(s3_endpoint), bucket, part_size=MIN_PART_SIZE, copy_part_size=MIN_PART_SIZE
        )
        plugin = serve(Services(settings=Settings(**settings), s3=lambda _conn_id: store))
        return S3Api(client, plugin, s3_endpoint, bucket, store)

    return start


@pytest.fixture
def s3(s3_api) -> S3Api:
    return s3_api()


# ----------------------------------------------------------------------------------- round trip


def test_upload_info_download_list_delete_round_trip(s3):
    data = "id;city\n1;São Paulo\n".encode()
    key = "reports/2024/cities.csv"

    created = s3.upload(key, data)
    in_bucket = s3.stored(key)
    info = s3.info(key)
    got = s3.get("download", key=key)
    head = s3.client.head(f"{s3.base}/download", params={"key": key})
    listed = s3.get("objects", prefix="reports/").json()
    deleted = s3.client.delete(f"{s3.base}/delete", params={"key": key})
    after = s3.get("object-info", key=key)

    assert created.status_code == 201
    result = created.json()
    assert list(result) == ["key", "etag", "version_id", "size"]
    assert (result["key"], result["size"], result["version_id"]) == (key, len(data), None)
    assert in_bucket == data
    assert info["exists"] is True and info["size"] == len(data) and info["etag"] == result["etag"]
    assert info["content_type"] == "text/csv"  # guessed from the key: the part said octet-stream
    assert got.status_code == 200 and got.content == data
    assert got.headers["Content-Length"] == str(len(data))
    assert got.headers["Content-Type"] == "text/csv"
    assert got.headers["ETag"] == result["etag"]
    assert got.headers["Content-Disposition"] == "attachment; filename=cities.csv"
    assert head.status_code == 200 and head.content == b"" and head.headers["ETag"] == result["etag"]
    assert listed["prefix"] == "reports/" and listed["count"] == 1 and "next_token" not in listed
    assert listed["objects"][0]["Key"] == key and listed["objects"][0]["Size"] == len(data)
    assert deleted.status_code == 200 and deleted.json() == {"key": key, "deleted": True}
    assert after.status_code == 200 and after.json() == {"key": key, "exists": False}


def test_a_missing_object_is_404_to_download_update_patch_and_delete(s3):
    key = "nowhere/missing.bin"

    responses = [
        s3.get("download", key=key),
        s3.send("PUT", "update", b"new", key=key),
        s3.send("PATCH", "patch", b"new", key=key, offset=0),
        s3.client.delete(f"{s3.base}/delete", params={"key": key}),
    ]

    for response in responses:
        assert response.status_code == 404, response.request.method
        assert response.json()["error"] == "Not Found"
        assert f"object {key!r} does not exist" in response.json()["detail"]
    assert s3.info(key)["exists"] is False  # the update did not create it


def test_listing_pages_with_max_keys_and_continuation(s3):
    keys = [f"logs/day-{i:02d}.ndjson" for i in range(5)]
    for key in [*keys, "other/file.txt"]:
        s3.upload(key, key.encode())

    pages, params = [], {"prefix": "logs/", "max_keys": "2"}
    while True:
        page = s3.get("objects", **params).json()
        pages.append(page)
        if "next_token" not in page:
            break
        params["continuation"] = page["next_token"]

    assert [page["count"] for page in pages] == [2, 2, 1]
    assert [obj["Key"] for page in pages for obj in page["objects"]] == keys
    assert s3.get("objects").json()["count"] == 6  # no prefix: the whole bucket


@pytest.mark.parametrize(
    "continuation",
    ["garbage", "NjZkNGE3", "eyJhZnRlciI6IDF9", "%%%", "dGVzdA==", "x" * 2000],
    ids=["word", "base64-not-json", "json-not-a-position", "symbols", "padded", "long"],
)
def test_a_continuation_that_is_no_next_token_is_400(s3, continuation):
    s3.upload("logs/a.txt", b"a")

    response = s3.get("objects", prefix="logs/", continuation=continuation)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "Bad Request"
    assert "next_token of a previous page" in response.json()["detail"]


def test_a_next_token_continues_only_its_own_listing(s3):
    for key in ("logs/a.txt", "logs/b.txt", "other/c.txt"):
        s3.upload(key, b"x")
    token = s3.get("objects", prefix="logs/", max_keys="1").json()["next_token"]

    same = s3.get("objects", prefix="logs/", continuation=token)
    other = s3.get("objects", prefix="other/", continuation=token)

    assert [obj["Key"] for obj in same.json()["objects"]] == ["logs/b.txt"]
    assert other.status_code == 400 and "same prefix" in other.json()["detail"]


def test_a_non_ascii_key_round_trips_and_names_the_download(s3):
    key = "отчёты/итог 2024.json"
    data = json.dumps({"total": 1}).encode()

    created = s3.upload(key, data)
    got = s3.get("download", key=key)

    assert created.status_code == 201 and s3.stored(key) == data
    assert got.content == data and got.headers["Content-Type"] == "application/json"
    assert got.headers["Content-Disposition"] == (
        "attachment; filename=\" 2024.json\"; filename*=UTF-8''%D0%B8%D1%82%D0%BE%D0%B3%202024.json"
    )


def test_the_parts_content_type_is_kept_and_an_update_keeps_the_objects_own(s3):
    key = "exports/events"

    created = s3.send("POST", "upload", b'{"a": 1}\n', "application/x-ndjson", key=key)
    updated = s3.send("PUT", "update", b'{"a": 2}\n', key=key)  # a generic part type says nothing

    assert created.status_code == 201 and updated.status_code == 200
    info = s3.info(key)
    assert info["content_type"] == "application/x-ndjson"
    assert s3.stored(key) == b'{"a": 2}\n'
    assert updated.json()["size"] == 9 and updated.json()["etag"] == info["etag"]


def test_a_versioned_bucket_answers_version_ids(s3_api):
    s3 = s3_api(versioned=True)

    created = s3.upload("v/a.txt", b"one").json()
    deleted = s3.client.delete(f"{s3.base}/delete", params={"key": "v/a.txt"}).json()

    assert created["version_id"] and deleted["version_id"]
    assert deleted["version_id"] != created["version_id"]  # the delete marker's


# ---------------------------------------------------------------------------------------- patch


@pytest.mark.parametrize(
    ("offset", "patch", "expected"),
    [
        (0, b"AB", b"ABcdefgh"),
        (3, b"XY", b"abcXYfgh"),
        (6, b"XYZW", b"abcdefXYZW"),  # runs past the end: extends
        (8, b"++", b"abcdefgh++"),  # offset == size appends
        (0, b"0123456789", b"0123456789"),
    ],
    ids=["start", "middle", "extend", "append", "cover"],
)
def test_patch_writes_at_the_offset(s3, offset, patch, expected):
    s3.upload("p/file.txt", b"abcdefgh")

    response = s3.send("PATCH", "patch", patch, key="p/file.txt", offset=offset)

    assert response.status_code == 200, response.text
    assert response.json()["size"] == len(expected)
    assert s3.stored("p/file.txt") == expected
    assert s3.get("download", key="p/file.txt").content == expected


def test_patch_beyond_the_end_is_416_and_writes_nothing(s3):
    s3.upload("p/file.txt", b"abcdefgh")

    response = s3.send("PATCH", "patch", b"zz", key="p/file.txt", offset=9)

    assert response.status_code == 416
    assert response.json()["error"] == "Requested Range Not Satisfiable"
    assert "offset 9 is beyond the end" in response.json()["detail"]
    assert s3.stored("p/file.txt") == b"abcdefgh"


def test_patch_in_the_middle_of_a_multipart_object(s3):
    """12 MiB in 5 MiB parts: the untouched ranges around the patch are copied by S3 itself."""
    data = bytes(range(256)) * (12 * MIB // 256)
    s3.upload("big/blob.bin", data)
    offset = 6 * MIB + 3

    response = s3.send("PATCH", "patch", b"PATCHED", key="big/blob.bin", offset=offset)

    assert response.status_code == 200 and response.json()["size"] == len(data)
    assert s3.stored("big/blob.bin") == data[:offset] + b"PATCHED" + data[offset + 7 :]


# ---------------------------------------------------------------------------------- large bodies


def test_a_20_mib_upload_streams_through_and_downloads_identically(s3):
    data = hashlib.sha256(b"seed").digest() * (20 * MIB // 32)
    created = s3.upload("big/20mib.bin", data)

    digest, size = hashlib.sha256(), 0
    with s3.client.stream("GET", f"{s3.base}/download", params={"key": "big/20mib.bin"}) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(len(data))
        for chunk in response.iter_bytes():
            digest.update(chunk)
            size += len(chunk)

    assert created.status_code == 201 and created.json()["size"] == len(data)
    assert size == len(data) and digest.digest() == hashlib.sha256(data).digest()
    assert created.json()["etag"].endswith('-4"')  # a multipart upload: 5 + 5 + 5 + 5 MiB


def test_a_head_of_a_download_opens_nothing_and_an_abandoned_download_is_closed(s3):
    """HEAD answers from the object's metadata. A client that hangs up early leaves the S3 connection
    closed all the same: Airflow's WSGI bridge never calls the response's close()."""
    data = hashlib.sha256(b"seed").digest() * (12 * MIB // 32)
    s3.upload("big/12mib.bin", data)

    head = s3.client.head(f"{s3.base}/download", params={"key": "big/12mib.bin"})
    missing = s3.client.head(f"{s3.base}/download", params={"key": "big/none.bin"})
    s3.plugin.server.wait_idle()
    opened_by_head = [opened.key for opened in s3.store.downloads]
    with s3.client.stream("GET", f"{s3.base}/download", params={"key": "big/12mib.bin"}) as response:
        first = next(response.iter_raw(64 * 1024))
    s3.plugin.server.wait_idle()

    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["ETag"] == s3.info("big/12mib.bin")["etag"]
    assert head.headers["Content-Disposition"] == "attachment; filename=12mib.bin"
    assert missing.status_code == 404
    assert opened_by_head == []
    assert len(first) < len(data) and [opened.key for opened in s3.store.downloads] == ["big/12mib.bin"]
    assert s3.store.still_open() == []


def multipart(data: bytes) -> tuple[bytes, str]:
    """``data`` as the form field ``file`` of a multipart body: the body and its Content-Type."""
    form = httpx.Request("POST", "http://form", files={"file": ("f.bin", data)})
    return form.read(), form.headers["Content-Type"]


def test_a_chunked_upload_is_read_whole_up_to_the_limit(s3_api):
    """A body sent with ``Transfer-Encoding: chunked`` has no Content-Length: it is read all the same,
    up to the limit itself (a larger one is 413, see below)."""
    limit = 64 * 1024
    s3 = s3_api(max_request_bytes=limit)
    small = bytes(range(256)) * 100
    overhead = len(multipart(small)[0]) - len(small)
    at_limit = b"L" * (limit - overhead)
    responses = {}

    for key, data in (("chunked/small.bin", small), ("chunked/at-limit.bin", at_limit)):
        body, content_type = multipart(data)
        responses[key] = s3.client.post(
            f"{s3.base}/upload",
            params={"key": key},
            content=iter([body[:1000], body[1000:]]),
            headers={"Content-Type": content_type},
        )

    for key, data in (("chunked/small.bin", small), ("chunked/at-limit.bin", at_limit)):
        response = responses[key]
        assert "Content-Length" not in response.request.headers
        assert response.status_code == 201, response.text
        assert response.json()["size"] == len(data) and s3.stored(key) == data
    assert len(multipart(at_limit)[0]) == limit


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_and_nothing_is_written(s3_api, chunked):
    s3 = s3_api(max_request_bytes=64 * 1024)
    form = httpx.Request("POST", "http://form", files={"file": ("f", b"x" * 65 * 1024)})
    body = form.read()

    response = s3.client.post(
        f"{s3.base}/upload",
        params={"key": "too/big.bin"},
        content=iter([body]) if chunked else body,
        headers={"Content-Type": form.headers["Content-Type"]},
    )

    assert ("Content-Length" in response.request.headers) is not chunked
    assert response.status_code == 413
    assert response.json()["error"] == "Request Entity Too Large"
    assert s3.info("too/big.bin")["exists"] is False


# ------------------------------------------------------------------------------------------- 400s


@pytest.mark.parametrize(
    ("method", "path", "params", "detail"),
    [
        ("GET", "object-info", {}, "Query parameter 'key' is required"),
        ("GET", "download", {"key": ""}, "Query parameter 'key' is required"),
        ("DELETE", "delete", {}, "Query parameter 'key' is required"),
        ("POST", "upload", {}, "Query parameter 'key' is required"),
        ("PUT", "update", {}, "Query parameter 'key' is required"),
        ("PATCH", "patch", {"offset": "0"}, "Query parameter 'key' is required"),
        ("GET", "object-info", {"key": "a/../b"}, "key must not contain '.' or '..' path segments"),
        ("POST", "upload", {"key": "/etc/passwd"}, "key must not start with '/'"),
        ("GET", "download", {"key": "a\\b"}, "key contains a backslash"),
        ("PATCH", "patch", {"key": "a.txt"}, "Query parameter 'offset' is required"),
        (
            "PATCH",
            "patch",
            {"key": "a.txt", "offset": "-1"},
            "'offset' must be an integer at least 0, got '-1'",
        ),
        (
            "PATCH",
            "patch",
            {"key": "a.txt", "offset": "1.5"},
            "'offset' must be an integer at least 0, got '1.5'",
        ),
        ("GET", "objects", {"max_keys": "0"}, "'max_keys' must be an integer from 1 to 1000, got '0'"),
        ("GET", "objects", {"max_keys": "all"}, "'max_keys' must be an integer from 1 to 1000, got 'all'"),
        ("GET", "objects", {"prefix": "../x"}, "prefix must not contain '.' or '..' path segments"),
    ],
)
def test_a_missing_or_invalid_parameter_is_400_naming_it(s3, method, path, params, detail):
    response = s3.send(method, path, b"data", **params)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "Bad Request"
    assert detail in response.json()["detail"]


def test_a_write_without_exactly_one_file_is_400_and_another_body_415(s3):
    url, params = f"{s3.base}/upload", {"key": "a.txt"}

    no_file = s3.client.post(url, params=params, data={"name": "a.txt"}, files={"other": ("f", b"x")})
    two_files = s3.client.post(url, params=params, files=[("file", ("a", b"1")), ("file", ("b", b"2"))])
    raw = s3.client.post(url, params=params, content=b"bytes")

    assert no_file.status_code == 400 and "it holds 0" in no_file.json()["detail"]
    assert two_files.status_code == 400 and "it holds 2" in two_files.json()["detail"]
    assert raw.status_code == 415 and "multipart/form-data" in raw.json()["detail"]
    assert s3.info("a.txt")["exists"] is False


# ------------------------------------------------------------------------------ store and wiring


def test_a_store_failure_is_502_without_credentials(serve, client, s3_endpoint):
    store = S3Store(s3_client(s3_endpoint), "no-such-bucket")
    s3 = S3Api(client, serve(Services(s3=lambda _conn_id: store)), s3_endpoint, "no-such-bucket", store)

    for response in (s3.get("objects"), s3.upload("a.txt", b"x")):
        assert response.status_code == 502
        assert response.json() == {"error": "Bad Gateway", "detail": "bucket 'no-such-bucket' does not exist"}
        assert SECRET_ACCESS_KEY not in response.text


def test_airflow_services_use_the_dwh_s3_connection(monkeypatch, serve, client, s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    fields = airflow_connection(s3_endpoint, bucket)
    set_connection(monkeypatch, S3_CONN_ID, fields.pop("conn_type"), **fields)
    s3 = S3Api(client, serve(Services.from_airflow()), s3_endpoint, bucket)

    created = s3.upload("from/airflow.txt", b"hello")

    assert created.status_code == 201
    assert s3.stored("from/airflow.txt") == b"hello"
    assert s3.get("download", key="from/airflow.txt").content == b"hello"


def test_without_a_bucket_in_the_connection_the_endpoints_are_503(monkeypatch, serve_services, client):
    set_connection(monkeypatch, S3_CONN_ID, "aws", login="key", password="secret-4d1e")
    base = serve_services(Services.from_airflow()) + "/s3"

    response = client.get(f"{base}/objects")

    assert response.status_code == 503
    assert response.json() == {
        "error": "Service Unavailable",
        "detail": "connection 'dwh_s3' names no bucket: set its extra 'bucket_name'",
    }
