"""The DWH helper's S3 operations on one bucket: list, info, download, upload, update, patch, delete.

The plugin's ``/s3/...`` blueprint and the export DAGs share this module. It answers in the DWH Helper's
response shapes (seed 004) and raises the :class:`S3Error` subclasses below, each carrying the HTTP
status the plugin answers with, so the blueprint only parses requests and serialises results. It never
touches Airflow context; :meth:`S3Store.from_connection` is the one place that reads a connection.

Memory stays bounded whatever the object size. Downloads hand out the S3 body to be streamed in
chunks. Every write goes through :class:`_ObjectWriter`, which holds at most one part (``part_size``,
8 MiB by default) in memory: an object that fits in one part is written by a single PutObject, a larger
one by a multipart upload, sent part by part and aborted if anything fails. One part in flight at a
time trades upload throughput for a memory bound that does not grow with concurrency settings; the
helper's objects are exports of tens to hundreds of MB, where that is the right trade.

S3 has no partial writes, so a patch rebuilds the object as *prefix + new bytes + suffix* under the
same key. Ranges of the old object at least 5 MiB long (S3's smallest part) are copied server-side by
UploadPartCopy and never cross the network twice; shorter ones are read by ranged GETs into the part
being built. Patching a few bytes of a multi-GB object therefore moves about 10 MiB, not the object.

Update and patch never silently overwrite a concurrent change (upload, like S3's PUT, is last writer
wins). They read the object's ETag first and
make every later request conditional on it (``IfMatch`` on the ranged GETs, PutObject and
CompleteMultipartUpload; ``CopySourceIfMatch`` on the copies; a versioned bucket's copies are also
pinned to the version read). When another writer got there first, the operation raises
:class:`Conflict` and writes nothing; the caller retries with fresh data. Some S3-compatible stores
(moto 5.2 among them) ignore ``IfMatch`` on CompleteMultipartUpload, so the writer re-reads the ETag
just before completing: on those stores a change in the last milliseconds can still slip through; on
S3 itself the condition is atomic.

Deleting a key that does not exist raises :class:`NotFound` although S3's DELETE is idempotent: the
seed's behaviour is unknown, and a client that deletes a mistyped key should hear so. The existence
check is a HEAD before the DELETE, so a delete racing another delete still answers ``deleted``.

Keys are checked by :func:`validate_key` before any request: non-empty, at most 1024 bytes of UTF-8 (S3's
limit), no control characters, no backslash, no leading ``/`` and no ``.`` or ``..`` segment. The last
four are stricter than S3 on purpose: control characters break XML listings and log lines, and the
others turn into paths outside their folder, or into other keys, as soon as a tool maps keys onto a
file system or normalises them as URL paths. Everything else (spaces, non-ASCII text, ``#``, ``%``,
``?``, ``+``, empty segments as in ``a//b``) is allowed; boto3 encodes it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import mimetypes
import re
import unicodedata
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from botocore.response import StreamingBody

DWH_S3_CONN_ID = "dwh_s3"

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3: every part of a multipart upload but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_COPY_PART_SIZE = 512 * MIB  # server-side copies: few requests, each short enough not to time out
CHUNK_SIZE = MIB  # reads from request bodies and S3 bodies
MAX_KEY_BYTES = 1024
MAX_LIST_KEYS = 1000  # S3's own page limit for ListObjectsV2


class S3Error(Exception):
    """An S3 operation could not be done; ``status`` is the HTTP status the plugin answers with."""

    status: ClassVar[int] = 500


class InvalidArgument(S3Error):
    """The request itself is wrong (a parameter out of range, a bad continuation token)."""

    status = 400


class InvalidKey(InvalidArgument):
    """The key (or prefix) breaks the rules of :func:`validate_key`."""


class InvalidRange(InvalidArgument):
    """A patch offset lies beyond the end of the object (appending is ``offset == size``)."""

    status = 416


class NotFound(S3Error):
    """The object does not exist."""

    status = 404


class Conflict(S3Error):
    """Another writer changed the object while this operation ran; nothing was written."""

    status = 409


class StorageError(S3Error):
    """The store failed or refused: unreachable, bad credentials, missing bucket, internal error."""

    status = 502


class Readable(Protocol):
    """What uploads read from: a file, a ``BytesIO``, a request's body stream."""

    def read(self, size: int = ..., /) -> bytes: ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a usable object key, else raise :class:`InvalidKey` saying why."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("key must be a non-empty string")
    _check_name(key, "key", whole_segments=True)
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start a key (empty lists the whole bucket), else raise :class:`InvalidKey`.

    Its last segment may be a partial name, so a trailing ``.`` or ``..`` is allowed (``reports/.`` is a
    prefix of ``reports/.hidden``).
    """
    if not isinstance(prefix, str):
        raise InvalidKey("prefix must be a string")
    if prefix:
        _check_name(prefix, "prefix", whole_segments=False)
    return prefix


def _check_name(value: str, field: str, *, whole_segments: bool) -> None:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey(f"{field} is not valid Unicode text (it holds a lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"{field} is {size} bytes long in UTF-8; S3 allows at most {MAX_KEY_BYTES}")
    control = next((char for char in value if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        raise InvalidKey(f"{field} contains the control character U+{ord(control):04X}")
    if "\\" in value:
        raise InvalidKey(f"{field} contains a backslash; separate folders with '/'")
    if value.startswith("/"):
        raise InvalidKey(f"{field} must not start with '/'")
    segments = value.split("/")
    if not whole_segments:
        segments = segments[:-1]
    if any(segment in (".", "..") for segment in segments):
        raise InvalidKey(f"{field} must not contain '.' or '..' path segments")


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC at whole seconds, as listings and HEAD agree only to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(response: dict[str, Any]) -> str | None:
    """The write's version id, or None when the bucket does not version it: S3 (and moto, even for an
    unversioned bucket) names that the ``"null"`` version."""
    version = response.get("VersionId")
    return None if version in (None, "null") else version


def _continuation_token(prefix: str, last_key: str) -> str:
    """The token of the page after ``last_key`` in the listing of ``prefix``: opaque to callers."""
    position = json.dumps({"prefix": prefix, "after": last_key}, ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(position.encode()).decode("ascii").rstrip("=")


def _listed_after(token: str, prefix: str) -> str:
    """The last key listed before the page ``token`` asks for; :class:`InvalidArgument` for anything
    :func:`_continuation_token` did not make for this ``prefix``."""
    try:
        position = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError all are
        position = None
    after = position.get("after") if isinstance(position, dict) else None
    if not isinstance(after, str) or position.get("prefix") != prefix or not after.startswith(prefix):
        raise InvalidArgument(
            "continuation must be the next_token of a previous page of the same listing (same prefix)"
        )
    return after


def _describe(exc: BotoCoreError) -> str:
    """A botocore error's text, with any ``user:password@`` of an endpoint URL masked."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", str(exc))


@dataclass
class ObjectMeta:
    """What a HEAD of an object tells: enough to describe a download without opening it."""

    key: str
    size: int
    etag: str
    last_modified: str
    content_type: str | None
    version_id: str | None

    @classmethod
    def from_response(cls, key: str, response: dict[str, Any]) -> ObjectMeta:
        """The metadata of a HeadObject or GetObject answer."""
        return cls(
            key=key,
            size=response["ContentLength"],
            etag=response["ETag"],
            last_modified=_iso(response["LastModified"]),
            content_type=response.get("ContentType"),
            version_id=_version(response),
        )


@dataclass
class S3Download(ObjectMeta):
    """An object being downloaded: its metadata now, its bytes on demand.

    Stream it with :meth:`chunks` (which closes the connection when done or abandoned), e.g. as a Flask
    response body; or use it as a context manager and read ``body`` directly.
    """

    body: StreamingBody

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(chunk_size)
        except BotoCoreError as exc:
            raise StorageError(f"download of {self.key!r} broke off: {_describe(exc)}") from exc
        finally:
            self.body.close()

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> S3Download:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class _Source:
    """The object a patch rewrites, as read at its start: every later read is conditional on it."""

    key: str
    etag: str
    version_id: str | None


class S3Store:
    """The operations on one bucket, over a boto3 S3 client.

    Thread-safe: it holds only settings and the client, and boto3 clients are thread-safe.
    """

    def __init__(
        self,
        client: BaseClient,
        bucket: str,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        copy_part_size: int = DEFAULT_COPY_PART_SIZE,
    ) -> None:
        for name, size in (("part_size", part_size), ("copy_part_size", copy_part_size)):
            if not MIN_PART_SIZE <= size <= MAX_PART_SIZE:
                raise ValueError(f"{name} must be from {MIN_PART_SIZE} to {MAX_PART_SIZE} bytes, not {size}")
        self.client = client
        self.bucket = bucket
        self.part_size = part_size
        self.copy_part_size = copy_part_size
        # botocore >= 1.36 adds a CRC32 to every upload by default; a multipart upload must then declare
        # the algorithm when it starts and list each part's checksum when it completes (as s3transfer does).
        calculation = client.meta.config.request_checksum_calculation
        self.checksum_algorithm = "CRC32" if calculation == "when_supported" else None

    @classmethod
    def from_connection(
        cls,
        conn_id: str = DWH_S3_CONN_ID,
        *,
        bucket: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        copy_part_size: int = DEFAULT_COPY_PART_SIZE,
    ) -> S3Store:
        """The store of an Airflow ``aws`` connection.

        ``login``/``password`` are the access key id and secret; extras ``endpoint_url`` (for an
        S3-compatible store) and ``region_name`` are honoured by the Amazon provider's hook. The bucket
        is ``bucket``, else the extra ``bucket_name``, else the provider's own
        ``service_config.s3.bucket_name``.
        """
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=conn_id)
        bucket = (
            bucket
            or hook.conn_config.extra_config.get("bucket_name")
            or hook.service_config.get("bucket_name")
        )
        if not bucket:
            raise StorageError(f"connection {conn_id!r} names no bucket: set its extra 'bucket_name'")
        return cls(hook.get_conn(), bucket, part_size=part_size, copy_part_size=copy_part_size)

    def list_objects(
        self, prefix: str = "", *, max_keys: int = MAX_LIST_KEYS, continuation: str | None = None
    ) -> dict[str, Any]:
        """One page of the keys under ``prefix``, in key order.

        ``next_token`` is present when more keys follow; pass it back as ``continuation`` (with the
        same ``prefix``). The token is this module's own, naming the last key listed, not the store's:
        so a token that is not one (mistyped, truncated, of another listing) is refused as an invalid
        argument whatever the store would make of it.
        """
        validate_prefix(prefix)
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or not 1 <= max_keys <= MAX_LIST_KEYS:
            raise InvalidArgument(f"max_keys must be an integer from 1 to {MAX_LIST_KEYS}")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if continuation:
            params["StartAfter"] = _listed_after(continuation, prefix)
        with self._translate("list", prefix):
            page = self.client.list_objects_v2(**params)
        objects = [
            {
                "Key": item["Key"],
                "LastModified": _iso(item["LastModified"]),
                "Size": item["Size"],
                "ETag": item["ETag"],
            }
            for item in page.get("Contents", [])
        ]
        result: dict[str, Any] = {"prefix": prefix, "objects": objects, "count": len(objects)}
        if page.get("IsTruncated") and objects:
            result["next_token"] = _continuation_token(prefix, objects[-1]["Key"])
        return result

    def object_info(self, key: str) -> dict[str, Any]:
        """The object's metadata, or ``{"key", "exists": False}`` when there is no such object."""
        validate_key(key)
        head = self._head(key, "info")
        if head is None:
            return {"key": key, "exists": False}
        return {
            "key": key,
            "exists": True,
            "size": head["ContentLength"],
            "etag": head["ETag"],
            "last_modified": _iso(head["LastModified"]),
            "content_type": head.get("ContentType"),
        }

    def head(self, key: str) -> ObjectMeta:
        """The object's metadata, without opening its bytes; raises :class:`NotFound` when it does not
        exist."""
        validate_key(key)
        return ObjectMeta.from_response(key, self._require(key, "download"))

    def download(self, key: str) -> S3Download:
        """Open the object for streaming; raises :class:`NotFound` when it does not exist."""
        validate_key(key)
        with self._translate("download", key):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        return S3Download(**vars(ObjectMeta.from_response(key, response)), body=response["Body"])

    def upload(self, key: str, fileobj: Readable, content_type: str | None = None) -> dict[str, Any]:
        """Create or replace the object with the bytes of ``fileobj``, read to its end.

        Without ``content_type`` the type is guessed from the key's extension
        (``application/octet-stream`` when unknown), so downloads come back with a useful type.
        """
        validate_key(key)
        content_type = content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
        with _ObjectWriter(self, key, "upload", content_type=content_type) as writer:
            writer.write_stream(fileobj)
            return writer.finish()

    def update(self, key: str, fileobj: Readable, content_type: str | None = None) -> dict[str, Any]:
        """Replace an existing object; :class:`NotFound` if there is none, :class:`Conflict` if it
        changes meanwhile. Its content type (unless given) and user metadata are kept."""
        validate_key(key)
        head = self._require(key, "update")
        with _ObjectWriter(
            self,
            key,
            "update",
            content_type=content_type or head.get("ContentType"),
            metadata=head.get("Metadata", {}),
            if_match=head["ETag"],
        ) as writer:
            writer.write_stream(fileobj)
            return writer.finish()

    def patch(self, key: str, offset: int, fileobj: Readable) -> dict[str, Any]:
        """Write the bytes of ``fileobj`` at ``offset`` of an existing object.

        They replace the bytes at ``[offset, offset + n)`` and extend the object when they run past its
        end; ``offset == size`` appends. An offset beyond the end raises :class:`InvalidRange`, a
        negative one :class:`InvalidArgument`. An empty patch writes nothing and answers the object as
        it is. Content type and user metadata are kept.
        """
        validate_key(key)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgument("offset must be a non-negative integer")
        head = self._require(key, "patch")
        size = head["ContentLength"]
        if offset > size:
            raise InvalidRange(
                f"offset {offset} is beyond the end of {key!r} ({size} bytes); offset {size} appends"
            )
        first = fileobj.read(CHUNK_SIZE)
        if not first:
            return {"key": key, "etag": head["ETag"], "version_id": _version(head), "size": size}
        source = _Source(key, head["ETag"], _version(head))
        with _ObjectWriter(
            self,
            key,
            "patch",
            content_type=head.get("ContentType"),
            metadata=head.get("Metadata", {}),
            if_match=source.etag,
        ) as writer:
            writer.copy_range(source, 0, offset)
            writer.write(first)
            written = len(first) + writer.write_stream(fileobj)
            writer.copy_range(source, offset + written, size)
            return writer.finish()

    def delete(self, key: str) -> dict[str, Any]:
        """Delete the object; :class:`NotFound` if it does not exist. In a versioned bucket the answer's
        ``version_id`` is the delete marker's, and earlier versions remain."""
        validate_key(key)
        self._require(key, "delete")
        with self._translate("delete", key):
            response = self.client.delete_object(Bucket=self.bucket, Key=key)
        result: dict[str, Any] = {"key": key, "deleted": True}
        if version := _version(response):
            result["version_id"] = version
        return result

    def _head(self, key: str, action: str) -> dict[str, Any] | None:
        try:
            with self._translate(action, key):
                return self.client.head_object(Bucket=self.bucket, Key=key)
        except NotFound:
            return None

    def _require(self, key: str, action: str) -> dict[str, Any]:
        head = self._head(key, action)
        if head is None:
            raise NotFound(f"object {key!r} does not exist in bucket {self.bucket!r}")
        return head

    @contextlib.contextmanager
    def _translate(self, action: str, key: str) -> Generator[None]:
        """Turn botocore's errors into this module's, with messages that name the key and never
        carry credentials."""
        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, action, key) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {action} of {key!r} failed: {_describe(exc)}") from exc

    def _client_error(self, exc: ClientError, action: str, key: str) -> S3Error:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or code
        if code == "NoSuchBucket":
            return StorageError(f"bucket {self.bucket!r} does not exist")
        if code in ("NoSuchKey", "NotFound", "404"):  # HEAD answers carry no body, hence the bare status
            return NotFound(f"object {key!r} does not exist in bucket {self.bucket!r}")
        if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return Conflict(f"object {key!r} was changed by another writer during the {action}; retry")
        if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(
                f"the S3 store refused the {action} of {key!r} ({code or status}); "
                "check the connection's credentials and permissions"
            )
        if action == "list" and code == "InvalidArgument":
            return InvalidArgument(f"cannot list {key!r}: {message}")
        return StorageError(f"S3 {action} of {key!r} failed: {code or status}: {message}")


class _ObjectWriter:
    """Builds one object from streamed bytes and ranges of an existing object, a part at a time.

    Bytes gather in a buffer that is sent as a part once it holds ``part_size``; so nothing is sent
    before a full part exists, and an object smaller than a part becomes one PutObject. Every part but
    the last must hold at least 5 MiB: a copied range is copied server-side only when it is that long
    and the buffer is empty or already a valid part; otherwise its bytes are read into the buffer
    (topping the buffer up to 5 MiB first, then copying the rest). Leaving the ``with`` block by an
    exception aborts a started multipart upload, so no orphan parts are billed.
    """

    def __init__(
        self,
        store: S3Store,
        key: str,
        action: str,
        *,
        content_type: str | None,
        metadata: dict[str, str] | None = None,
        if_match: str | None = None,
    ) -> None:
        self._store = store
        self._client = store.client
        self._key = key
        self._action = action
        self._if_match = if_match
        self._object_args: dict[str, Any] = {"Bucket": store.bucket, "Key": key, "Metadata": metadata or {}}
        if content_type:
            self._object_args["ContentType"] = content_type
        self._buffer = io.BytesIO()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self.size = 0

    def __enter__(self) -> _ObjectWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and self._upload_id is not None:
            # Best effort: the original error matters more, and an S3 lifecycle rule can reap leftovers.
            with contextlib.suppress(ClientError, BotoCoreError):
                self._client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id
                )

    def write(self, data: bytes) -> None:
        self._buffer.write(data)
        self.size += len(data)
        if self._buffer.tell() >= self._store.part_size:
            self._flush()

    def write_stream(self, fileobj: Readable) -> int:
        """Append ``fileobj`` to its end; return the number of bytes read."""
        total = 0
        while chunk := fileobj.read(CHUNK_SIZE):
            self.write(chunk)
            total += len(chunk)
        return total

    def copy_range(self, source: _Source, start: int, end: int) -> None:
        """Append the bytes ``[start, end)`` of ``source``, server-side where S3's part rules allow."""
        buffered = self._buffer.tell()
        if start < end and 0 < buffered < MIN_PART_SIZE:
            top_up = min(end - start, MIN_PART_SIZE - buffered)
            self._read_range(source, start, start + top_up)
            start += top_up
        if end - start >= MIN_PART_SIZE:
            self._flush()
            self._copy_parts(source, start, end)
        elif start < end:
            self._read_range(source, start, end)

    def finish(self) -> dict[str, Any]:
        """Write the object; return ``{"key", "etag", "version_id", "size"}``."""
        with self._store._translate(self._action, self._key):
            if self._upload_id is None:
                args = dict(self._object_args, Body=self._rewound())
                if self._if_match:
                    args["IfMatch"] = self._if_match
                response = self._client.put_object(**args)
            else:
                self._flush()
                response = self._complete()
        return {
            "key": self._key,
            "etag": response["ETag"],
            "version_id": _version(response),
            "size": self.size,
        }

    def _complete(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": self._key,
            "UploadId": self._upload_id,
            "MultipartUpload": {"Parts": self._parts},
        }
        if self._if_match:
            current = self._client.head_object(Bucket=self._store.bucket, Key=self._key)
            if current["ETag"] != self._if_match:
                raise Conflict(
                    f"object {self._key!r} was changed by another writer during the {self._action}; retry"
                )
            args["IfMatch"] = self._if_match
        response = self._client.complete_multipart_upload(**args)
        self._upload_id = None
        return response

    def _read_range(self, source: _Source, start: int, end: int) -> None:
        args: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": source.key,
            "Range": f"bytes={start}-{end - 1}",
            "IfMatch": source.etag,
        }
        if source.version_id:
            args["VersionId"] = source.version_id
        with self._store._translate(self._action, self._key):
            body = self._client.get_object(**args)["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK_SIZE):
                    self.write(chunk)
            finally:
                body.close()

    def _copy_parts(self, source: _Source, start: int, end: int) -> None:
        # Near-equal pieces of about copy_part_size, but never so many that one falls under 5 MiB.
        length = end - start
        pieces = min(math.ceil(length / self._store.copy_part_size), length // MIN_PART_SIZE)
        copy_source: dict[str, str] = {"Bucket": self._store.bucket, "Key": source.key}
        if source.version_id:
            copy_source["VersionId"] = source.version_id
        for index in range(pieces):
            first = start + length * index // pieces
            last = start + length * (index + 1) // pieces
            upload_id = self._started()
            with self._store._translate(self._action, self._key):
                response = self._client.upload_part_copy(
                    Bucket=self._store.bucket,
                    Key=self._key,
                    UploadId=upload_id,
                    PartNumber=len(self._parts) + 1,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={first}-{last - 1}",
                    CopySourceIfMatch=source.etag,
                )
            self._add_part(response["CopyPartResult"])
            self.size += last - first

    def _flush(self) -> None:
        if not self._buffer.tell():
            return
        upload_id = self._started()
        args: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": self._key,
            "UploadId": upload_id,
            "PartNumber": len(self._parts) + 1,
            "Body": self._rewound(),
        }
        if self._store.checksum_algorithm:
            args["ChecksumAlgorithm"] = self._store.checksum_algorithm
        with self._store._translate(self._action, self._key):
            response = self._client.upload_part(**args)
        self._add_part(response)
        self._buffer = io.BytesIO()

    def _started(self) -> str:
        """The multipart upload's id, starting it on first use; refuses a part beyond S3's 10,000th."""
        if len(self._parts) >= MAX_PARTS:
            raise InvalidArgument(
                f"object {self._key!r} would need more than {MAX_PARTS} parts of "
                f"{self._store.part_size} bytes; configure a larger part_size"
            )
        if self._upload_id is None:
            args = dict(self._object_args)
            if self._store.checksum_algorithm:
                args["ChecksumAlgorithm"] = self._store.checksum_algorithm
            with self._store._translate(self._action, self._key):
                self._upload_id = self._client.create_multipart_upload(**args)["UploadId"]
        return self._upload_id

    def _add_part(self, result: dict[str, Any]) -> None:
        part = {"PartNumber": len(self._parts) + 1, "ETag": result["ETag"]}
        checksum = f"Checksum{self._store.checksum_algorithm}"
        if self._store.checksum_algorithm and result.get(checksum):
            part[checksum] = result[checksum]
        self._parts.append(part)

    def _rewound(self) -> io.BytesIO:
        self._buffer.seek(0)
        return self._buffer
