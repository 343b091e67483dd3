"""The DWH helper's S3 operations against the local S3 store (moto's server) over real HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config

from include.dwh.config import S3_CONN_ID
from include.dwh.s3 import S3Store
from include.dwh.s3_keys import (
    ConflictError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidRangeError,
    NotFoundError,
    StorageError,
    validate_key,
    validate_prefix,
)
from include.dwh.s3_upload import MIB, MIN_PART_SIZE
from sandbox.simulators.s3 import (
    SECRET_ACCESS_KEY,
    airflow_connection,
    create_bucket,
    s3_client,
    serve_s3,
)
from tests.conftest import REPO_ROOT, new_bucket, set_connection

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def store(s3_endpoint) -> S3Store:
    return S3Store(s3_client(s3_endpoint), new_bucket(s3_endpoint))


@pytest.fixture
def small_parts(s3_endpoint) -> S3Store:
    """Multipart from 5 MiB on, so that a few MiB exercise parts and server-side copies."""
    return S3Store(
        s3_client(s3_endpoint), new_bucket(s3_endpoint), part_size=MIN_PART_SIZE, copy_part_size=MIN_PART_SIZE
    )


@pytest.fixture
def versioned(s3_endpoint) -> S3Store:
    return S3Store(s3_client(s3_endpoint), new_bucket(s3_endpoint, versioned=True))


def put(store: S3Store, key: str, data: bytes) -> dict:
    return store.upload(key, io.BytesIO(data))


def read(store: S3Store, key: str) -> bytes:
    return b"".join(store.download(key).chunks())


def record_calls(store: S3Store) -> list[tuple[str, dict]]:
    """Every S3 operation the store's client sends from now on, with its parameters."""
    calls: list[tuple[str, dict]] = []
    store.client.meta.events.register(
        "before-call.s3", lambda model, params, **_: calls.append((model.name, params))
    )
    return calls


def connect(monkeypatch, connection: dict) -> None:
    """Make ``connection`` (the JSON form, as :func:`airflow_connection` builds it) the ``dwh_s3`` one."""
    fields = dict(connection)
    set_connection(monkeypatch, S3_CONN_ID, fields.pop("conn_type"), **fields)


def pending_uploads(store: S3Store) -> list:
    return store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


# --- the store itself ---------------------------------------------------------------------------------


def test_server_serves_on_a_given_port_and_frees_it_when_stopped():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serve_s3(port) as url:
        assert url == f"http://127.0.0.1:{port}"
        bucket = new_bucket(url, versioned=True)
        create_bucket(url, bucket)  # idempotent
        assert s3_client(url).get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.fixture(scope="module")
def standalone() -> Iterator[dict]:
    """The store as `make airflow` users start it: its own process, its first stdout line parsed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.simulators.s3", "--port", "0", "--bucket", "dwh", "--versioned"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield json.loads(process.stdout.readline())
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0  # SIGTERM is a clean stop


def test_standalone_server_prints_its_endpoint_and_connection(standalone):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", standalone["endpoint_url"])
    assert standalone["bucket"] == "dwh"
    connection = json.loads(standalone["airflow_conn_dwh_s3"])
    assert connection == airflow_connection(standalone["endpoint_url"], "dwh")
    client = s3_client(standalone["endpoint_url"])
    assert client.get_bucket_versioning(Bucket="dwh")["Status"] == "Enabled"


def test_concurrent_requests_from_many_threads(store):
    payloads = {f"threads/{n:02}.bin": os.urandom(64 * 1024 + n) for n in range(24)}

    def round_trip(key: str) -> bool:
        put(store, key, payloads[key])
        store.list_objects("threads/")
        return read(store, key) == payloads[key]

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(round_trip, payloads))
    listed = store.list_objects("threads/")["objects"]
    assert {item["Key"]: item["Size"] for item in listed} == {k: len(v) for k, v in payloads.items()}


# --- list and info ------------------------------------------------------------------------------------


def test_list_objects_pages_through_more_keys_than_a_page(store):
    keys = [f"events/{n:03}.json" for n in range(25)]
    for key in keys:
        put(store, key, b"{}")
    put(store, "other/x.json", b"{}")

    seen, token, pages = [], None, 0
    while True:
        page = store.list_objects("events/", max_keys=10, continuation=token)
        pages += 1
        assert page["prefix"] == "events/" and page["count"] == len(page["objects"]) <= 10
        seen += [item["Key"] for item in page["objects"]]
        token = page.get("next_token")
        if token is None:
            break
    assert pages == 3 and seen == keys

    item = store.list_objects("events/000")["objects"][0]
    assert set(item) == {"Key", "LastModified", "Size", "ETag"}
    assert ISO_Z.match(item["LastModified"]) and item["Size"] == 2 and item["ETag"].startswith('"')
    assert store.list_objects()["count"] == 26
    assert store.list_objects("nothing/") == {"prefix": "nothing/", "objects": [], "count": 0}


@pytest.mark.parametrize("max_keys", [0, 1001, -1, True, "10"])
def test_list_objects_refuses_a_page_size_s3_does_not_serve(store, max_keys):
    with pytest.raises(InvalidArgumentError, match="max_keys"):
        store.list_objects(max_keys=max_keys)


def test_object_info_of_present_and_missing_objects(store):
    written = store.upload("reports/day.csv", io.BytesIO(b"a,b\n1,2\n"))
    info = store.object_info("reports/day.csv")
    assert info == {
        "key": "reports/day.csv",
        "exists": True,
        "size": 8,
        "etag": written["etag"],
        "last_modified": info["last_modified"],
        "content_type": "text/csv",
    }
    assert ISO_Z.match(info["last_modified"])
    assert store.object_info("reports/none.csv") == {"key": "reports/none.csv", "exists": False}


# --- download, upload, update, delete -----------------------------------------------------------------


def test_upload_and_download_round_trip_with_metadata(store):
    result = store.upload("exports/week.zip", io.BytesIO(b"PK\x03\x04zip"))
    assert set(result) == {"key", "etag", "version_id", "size"}
    assert result["key"] == "exports/week.zip" and result["size"] == 7 and result["version_id"] is None
    with store.download("exports/week.zip") as download:
        assert (download.size, download.etag, download.content_type) == (7, result["etag"], "application/zip")
        assert ISO_Z.match(download.last_modified)
        assert download.body.read() == b"PK\x03\x04zip"

    store.upload("exports/blob", io.BytesIO(b"x"), content_type="application/x-ndjson")
    assert store.object_info("exports/blob")["content_type"] == "application/x-ndjson"
    store.upload("exports/unknown.zzz", io.BytesIO(b""))
    assert store.object_info("exports/unknown.zzz")["content_type"] == "application/octet-stream"
    assert read(store, "exports/unknown.zzz") == b""


def test_download_of_a_missing_object_is_not_found(store):
    with pytest.raises(NotFoundError, match="'nope.bin' does not exist") as raised:
        store.download("nope.bin")
    assert raised.value.status == 404


def test_multipart_upload_of_an_object_larger_than_a_part(small_parts):
    data = os.urandom(2 * MIN_PART_SIZE + 123)
    calls = record_calls(small_parts)
    result = put(small_parts, "big/data.bin", data)
    assert result["size"] == len(data) and result["etag"].endswith('-3"')
    assert [name for name, _ in calls].count("UploadPart") == 3
    assert read(small_parts, "big/data.bin") == data


def test_update_replaces_an_existing_object_and_keeps_its_type(store):
    put(store, "state.json", b'{"v": 1}')
    result = store.update("state.json", io.BytesIO(b'{"v": 2, "more": true}'))
    assert result["size"] == 22 and result["etag"] == store.object_info("state.json")["etag"]
    assert read(store, "state.json") == b'{"v": 2, "more": true}'
    assert store.object_info("state.json")["content_type"] == "application/json"


def test_update_of_a_missing_object_is_not_found_and_creates_nothing(store):
    with pytest.raises(NotFoundError):
        store.update("ghost.json", io.BytesIO(b"{}"))
    assert store.object_info("ghost.json")["exists"] is False


def test_delete_answers_not_found_for_a_missing_key(store):
    put(store, "tmp/a.txt", b"a")
    assert store.delete("tmp/a.txt") == {"key": "tmp/a.txt", "deleted": True}
    assert store.object_info("tmp/a.txt")["exists"] is False
    with pytest.raises(NotFoundError):
        store.delete("tmp/a.txt")


def test_versioned_bucket_answers_version_ids(versioned):
    first = put(versioned, "v/file.txt", b"one")
    second = put(versioned, "v/file.txt", b"two")
    assert first["version_id"] and second["version_id"] and first["version_id"] != second["version_id"]
    patched = versioned.patch("v/file.txt", 3, io.BytesIO(b"+"))
    assert patched["version_id"] not in (None, first["version_id"], second["version_id"])
    assert versioned.download("v/file.txt").version_id == patched["version_id"]
    deleted = versioned.delete("v/file.txt")
    assert deleted["deleted"] is True and deleted["version_id"]
    versions = versioned.client.list_object_versions(Bucket=versioned.bucket)["Versions"]
    assert len(versions) == 3  # a delete in a versioned bucket keeps the history


# --- patch --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "data", "expected"),
    [
        (3, b"XY", b"012XY56789"),  # in the middle
        (0, b"AB", b"AB23456789"),  # at the start
        (8, b"XYZW", b"01234567XYZW"),  # past the end: extends
        (10, b"tail", b"0123456789tail"),  # offset == size: appends
    ],
)
def test_patch_splices_bytes_at_an_offset(store, offset, data, expected):
    put(store, "p.txt", b"0123456789")
    result = store.patch("p.txt", offset, io.BytesIO(data))
    assert read(store, "p.txt") == expected
    assert result == {
        "key": "p.txt",
        "etag": store.object_info("p.txt")["etag"],
        "version_id": None,
        "size": len(expected),
    }


def test_patch_beyond_the_end_is_an_invalid_range_and_changes_nothing(store):
    written = put(store, "p.txt", b"0123456789")
    with pytest.raises(InvalidRangeError, match="offset 11 is beyond the end .* offset 10 appends") as raised:
        store.patch("p.txt", 11, io.BytesIO(b"x"))
    assert raised.value.status == 416
    assert store.object_info("p.txt")["etag"] == written["etag"]


@pytest.mark.parametrize("offset", [-1, True, 1.5])
def test_patch_refuses_an_offset_that_is_not_a_position(store, offset):
    put(store, "p.txt", b"0123456789")
    with pytest.raises(InvalidArgumentError, match="offset must be a non-negative integer"):
        store.patch("p.txt", offset, io.BytesIO(b"x"))


def test_empty_patch_writes_nothing(store):
    written = put(store, "p.txt", b"0123456789")
    calls = record_calls(store)
    assert store.patch("p.txt", 4, io.BytesIO(b"")) == written
    assert [name for name, _ in calls] == ["HeadObject"]


def test_patch_of_a_missing_object_is_not_found(store):
    with pytest.raises(NotFoundError):
        store.patch("ghost.bin", 0, io.BytesIO(b"x"))
    assert store.object_info("ghost.bin")["exists"] is False


def test_patch_of_an_empty_object_at_zero(store):
    put(store, "empty.bin", b"")
    store.patch("empty.bin", 0, io.BytesIO(b"now"))
    assert read(store, "empty.bin") == b"now"


def test_patch_copies_large_untouched_ranges_server_side(small_parts):
    data = os.urandom(3 * MIN_PART_SIZE + 1000)
    small_parts.upload("big.bin", io.BytesIO(data), content_type="application/x-ndjson")
    offset = MIN_PART_SIZE + 17
    calls = record_calls(small_parts)

    result = small_parts.patch("big.bin", offset, io.BytesIO(b"PATCH"))

    expected = data[:offset] + b"PATCH" + data[offset + 5 :]
    assert result["size"] == len(expected) and read(small_parts, "big.bin") == expected
    names = [name for name, _ in calls]
    assert names.count("UploadPartCopy") >= 2
    ranges = [params["Range"] for name, params in calls if name == "GetObject" and "Range" in params]
    fetched = sum(int(b) - int(a) + 1 for a, b in (r.removeprefix("bytes=").split("-") for r in ranges))
    assert fetched <= MIN_PART_SIZE  # only the bytes that top the patch up to a valid part
    assert small_parts.object_info("big.bin")["content_type"] == "application/x-ndjson"


def test_patch_past_the_end_of_a_large_object(small_parts):
    data = os.urandom(MIN_PART_SIZE + 10)
    put(small_parts, "big.bin", data)
    tail = os.urandom(MIN_PART_SIZE)
    small_parts.patch("big.bin", len(data) - 4, io.BytesIO(tail))
    assert read(small_parts, "big.bin") == data[:-4] + tail


class RacingReader:
    """Reads ``data``, but just before its ``nth`` read another writer replaces the object."""

    def __init__(self, data: bytes, nth: int, race: Callable[[], object]) -> None:
        self._data = io.BytesIO(data)
        self._reads = 0
        self._nth = nth
        self._race = race

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._reads == self._nth:
            self._race()
        return self._data.read(size)


@pytest.mark.parametrize(
    ("size", "offset", "nth"),
    [
        pytest.param(10, 2, 1, id="changed-before-the-old-bytes-are-read"),
        pytest.param(10, 10, 2, id="changed-before-the-write"),
        pytest.param(MIN_PART_SIZE + 1, MIN_PART_SIZE + 1, 2, id="multipart-changed-before-completing"),
    ],
)
def test_concurrent_change_makes_a_patch_conflict_instead_of_losing_it(small_parts, size, offset, nth):
    put(small_parts, "shared.bin", b"a" * size)
    competitor = b"written by another client"
    racing = RacingReader(b"patch", nth, lambda: put(small_parts, "shared.bin", competitor))

    with pytest.raises(ConflictError, match="changed by another writer during the patch") as raised:
        small_parts.patch("shared.bin", offset, racing)

    assert raised.value.status == 409
    assert read(small_parts, "shared.bin") == competitor
    assert pending_uploads(small_parts) == []


@pytest.mark.parametrize("size", [10, 2 * MIN_PART_SIZE], ids=["single-put", "multipart"])
def test_concurrent_change_makes_an_update_conflict(small_parts, size):
    put(small_parts, "shared.bin", b"old")
    competitor = b"written by another client"
    data = os.urandom(size)
    racing = RacingReader(data, -(-size // MIB), lambda: put(small_parts, "shared.bin", competitor))

    with pytest.raises(ConflictError):
        small_parts.update("shared.bin", racing)

    assert read(small_parts, "shared.bin") == competitor
    assert pending_uploads(small_parts) == []


# --- keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "folder/",
        "amplitude/2024_week_05.zip",
        "отчёты 2024/#1 (final)?.csv",
        "a//b",
        ".hidden/..dots../x.",
        "k" * 1024,
        "é" * 512,
    ],
)
def test_valid_keys(store, key):
    assert validate_key(key) == key
    put(store, key, b"ok")
    assert read(store, key) == b"ok"
    assert store.list_objects(key)["objects"][0]["Key"] == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        ("/abs/path", "must not start with '/'"),
        ("a/../b", r"'\.' or '\.\.'"),
        ("..", r"'\.' or '\.\.'"),
        ("a/./b", r"'\.' or '\.\.'"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "control character U\\+0000"),
        ("line\nbreak", "control character U\\+000A"),
        ("del\x7f", "control character U\\+007F"),
        ("c1\x85", "control character U\\+0085"),
        ("k" * 1025, "1025 bytes long"),
        ("é" * 513, "1026 bytes long"),
        ("bad\ud800", "lone surrogate"),
    ],
)
def test_invalid_keys_are_refused_before_any_request(store, key, reason):
    calls = record_calls(store)
    with pytest.raises(InvalidKeyError, match=reason) as raised:
        store.upload(key, io.BytesIO(b"x"))
    assert raised.value.status == 400
    for operation in (store.object_info, store.download, store.delete):
        with pytest.raises(InvalidKeyError):
            operation(key)
    with pytest.raises(InvalidKeyError):
        store.patch(key, 0, io.BytesIO(b"x"))
    assert calls == []


def test_prefixes_may_end_in_a_partial_segment():
    assert validate_prefix("") == ""
    assert validate_prefix("reports/.") == "reports/."
    assert validate_prefix("reports/..") == "reports/.."
    for prefix in ("/reports", "a/../", "a\tb"):
        with pytest.raises(InvalidKeyError, match="prefix"):
            validate_prefix(prefix)


# --- connections and failures -------------------------------------------------------------------------


def test_store_from_the_airflow_connection(s3_endpoint, monkeypatch):
    bucket = new_bucket(s3_endpoint)
    connect(monkeypatch, airflow_connection(s3_endpoint, bucket))
    store = S3Store.from_connection()
    assert store.bucket == bucket and store.client.meta.endpoint_url == s3_endpoint
    put(store, "via/connection.txt", b"hi")
    assert s3_client(s3_endpoint).get_object(Bucket=bucket, Key="via/connection.txt")["Body"].read() == b"hi"
    assert S3Store.from_connection(bucket="other").bucket == "other"


def test_bucket_from_the_providers_service_config(s3_endpoint, monkeypatch):
    connection = airflow_connection(s3_endpoint, "unused")
    connection["extra"] = {
        "endpoint_url": s3_endpoint,
        "service_config": {"s3": {"bucket_name": "from-service"}},
    }
    connect(monkeypatch, connection)
    assert S3Store.from_connection().bucket == "from-service"


def test_connection_without_a_bucket_is_refused(s3_endpoint, monkeypatch):
    connection = airflow_connection(s3_endpoint, "unused")
    del connection["extra"]["bucket_name"]
    connect(monkeypatch, connection)
    with pytest.raises(StorageError, match="'dwh_s3' names no bucket"):
        S3Store.from_connection()


def test_missing_bucket_is_a_storage_error(s3_endpoint):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist") as raised:
        S3Store(s3_client(s3_endpoint), "no-such-bucket").list_objects()
    assert raised.value.status == 502


def test_unreachable_store_errors_name_no_credentials():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = boto3.client(
        "s3",
        endpoint_url=f"http://user:url-password@127.0.0.1:{closed_port}",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(StorageError, match="Could not connect") as raised:
        S3Store(client, "b").object_info("k")
    assert "url-password" not in str(raised.value) and SECRET_ACCESS_KEY not in str(raised.value)


# --- memory -------------------------------------------------------------------------------------------


def test_large_objects_stream_in_bounded_memory(standalone):
    """Against the store in its own process, so that tracemalloc counts this process's buffers only."""
    store = S3Store(s3_client(standalone["endpoint_url"]), "dwh", part_size=MIN_PART_SIZE)
    size = 48 * MIB
    expected = hashlib.sha256()
    with tempfile.TemporaryFile() as source:
        for _ in range(size // MIB):
            block = os.urandom(MIB)
            source.write(block)
            expected.update(block)
        source.seek(0)
        store.object_info("warm-up")  # the client's first request loads botocore's models

        tracemalloc.start()
        try:
            result = store.upload("big/export.bin", source)
            upload_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()

            got = hashlib.sha256()
            for chunk in store.download("big/export.bin").chunks():
                got.update(chunk)
            download_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()

            store.patch("big/export.bin", size // 2, io.BytesIO(b"patched"))
            patch_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert result["size"] == size and got.digest() == expected.digest()
    assert store.object_info("big/export.bin")["size"] == size
    # One part in flight (5 MiB here) plus botocore's own buffers, never the 48 MiB object.
    assert upload_peak < 3 * MIN_PART_SIZE, upload_peak
    assert patch_peak < 3 * MIN_PART_SIZE, patch_peak
    assert download_peak < 4 * MIB, download_peak
