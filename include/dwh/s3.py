"""The DWH helper's S3 operations on one bucket: list, info, download, upload, update, patch, delete.

The plugin's ``/s3/...`` blueprint and the export DAGs share this module. It answers in the response
shapes of the DWH helper service and raises the :class:`~include.dwh.s3_keys.S3Error` subclasses of
:mod:`include.dwh.s3_keys`, each carrying the HTTP status the plugin answers with, so the blueprint only
parses requests and serialises results. Keys are checked there (:func:`~include.dwh.s3_keys.validate_key`)
before any request. It never touches Airflow context; :meth:`S3Store.from_connection` is the one place
that reads a connection.

Memory stays bounded whatever the object size: downloads hand out the S3 body to be streamed in chunks,
and every write (upload, update, patch) goes through :class:`~include.dwh.s3_upload.ObjectWriter`, which
holds at most one part in memory and makes update and patch conditional on the ETag they read first
(see :mod:`include.dwh.s3_upload`).

Deleting a key that does not exist raises :class:`~include.dwh.s3_keys.NotFoundError` although S3's DELETE is
idempotent: the original service's behaviour is not documented, and a client that deletes a mistyped key
should hear so. The existence check is a HEAD before the DELETE, so a delete racing another delete still
answers ``deleted``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import mimetypes
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from include.dwh.config import S3_CONN_ID
from include.dwh.s3_keys import (
    ConflictError,
    InvalidArgumentError,
    InvalidRangeError,
    NotFoundError,
    S3Error,
    StorageError,
    validate_key,
    validate_prefix,
)
from include.dwh.s3_upload import (
    CHUNK_SIZE,
    DEFAULT_COPY_PART_SIZE,
    DEFAULT_PART_SIZE,
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    ObjectWriter,
    PatchSource,
    Readable,
    version_of,
)

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from botocore.response import StreamingBody

MAX_LIST_KEYS = 1000  # S3's own page limit for ListObjectsV2


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC at whole seconds, as listings and HEAD agree only to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _continuation_token(prefix: str, last_key: str) -> str:
    """The token of the page after ``last_key`` in the listing of ``prefix``: opaque to callers."""
    position = json.dumps({"prefix": prefix, "after": last_key}, ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(position.encode()).decode("ascii").rstrip("=")


def _listed_after(token: str, prefix: str) -> str:
    """The last key listed before the page ``token`` asks for; :class:`InvalidArgumentError` for anything
    :func:`_continuation_token` did not make for this ``prefix``."""
    try:
        position = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError all are
        position = None
    after = position.get("after") if isinstance(position, dict) else None
    if not isinstance(after, str) or position.get("prefix") != prefix or not after.startswith(prefix):
        raise InvalidArgumentError(
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
            version_id=version_of(response),
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
        conn_id: str = S3_CONN_ID,
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
            raise InvalidArgumentError(f"max_keys must be an integer from 1 to {MAX_LIST_KEYS}")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if continuation:
            params["StartAfter"] = _listed_after(continuation, prefix)
        with self.translate_errors("list", prefix):
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
        """The object's metadata, without opening its bytes; raises :class:`NotFoundError` when it does not
        exist."""
        validate_key(key)
        return ObjectMeta.from_response(key, self._require(key, "download"))

    def download(self, key: str) -> S3Download:
        """Open the object for streaming; raises :class:`NotFoundError` when it does not exist."""
        validate_key(key)
        with self.translate_errors("download", key):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        return S3Download(**vars(ObjectMeta.from_response(key, response)), body=response["Body"])

    def upload(self, key: str, fileobj: Readable, content_type: str | None = None) -> dict[str, Any]:
        """Create or replace the object with the bytes of ``fileobj``, read to its end.

        Without ``content_type`` the type is guessed from the key's extension
        (``application/octet-stream`` when unknown), so downloads come back with a useful type.
        """
        validate_key(key)
        content_type = content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
        with ObjectWriter(self, key, "upload", content_type=content_type) as writer:
            writer.write_stream(fileobj)
            return writer.finish()

    def update(self, key: str, fileobj: Readable, content_type: str | None = None) -> dict[str, Any]:
        """Replace an existing object; :class:`NotFoundError` if there is none, :class:`ConflictError` if it
        changes meanwhile. Its content type (unless given) and user metadata are kept."""
        validate_key(key)
        head = self._require(key, "update")
        with ObjectWriter(
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
        end; ``offset == size`` appends. An offset beyond the end raises :class:`InvalidRangeError`, a
        negative one :class:`InvalidArgumentError`. An empty patch writes nothing and answers the object as
        it is. Content type and user metadata are kept.
        """
        validate_key(key)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError("offset must be a non-negative integer")
        head = self._require(key, "patch")
        size = head["ContentLength"]
        if offset > size:
            raise InvalidRangeError(
                f"offset {offset} is beyond the end of {key!r} ({size} bytes); offset {size} appends"
            )
        first = fileobj.read(CHUNK_SIZE)
        if not first:
            return {"key": key, "etag": head["ETag"], "version_id": version_of(head), "size": size}
        source = PatchSource(key, head["ETag"], version_of(head))
        with ObjectWriter(
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
        """Delete the object; :class:`NotFoundError` if it does not exist. In a versioned bucket the answer's
        ``version_id`` is the delete marker's, and earlier versions remain."""
        validate_key(key)
        self._require(key, "delete")
        with self.translate_errors("delete", key):
            response = self.client.delete_object(Bucket=self.bucket, Key=key)
        result: dict[str, Any] = {"key": key, "deleted": True}
        if version := version_of(response):
            result["version_id"] = version
        return result

    def _head(self, key: str, action: str) -> dict[str, Any] | None:
        try:
            with self.translate_errors(action, key):
                return self.client.head_object(Bucket=self.bucket, Key=key)
        except NotFoundError:
            return None

    def _require(self, key: str, action: str) -> dict[str, Any]:
        head = self._head(key, action)
        if head is None:
            raise NotFoundError(f"object {key!r} does not exist in bucket {self.bucket!r}")
        return head

    @contextlib.contextmanager
    def translate_errors(self, action: str, key: str) -> Generator[None]:
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
            return NotFoundError(f"object {key!r} does not exist in bucket {self.bucket!r}")
        if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return ConflictError(f"object {key!r} was changed by another writer during the {action}; retry")
        if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(
                f"the S3 store refused the {action} of {key!r} ({code or status}); "
                "check the connection's credentials and permissions"
            )
        if action == "list" and code == "InvalidArgument":
            return InvalidArgumentError(f"cannot list {key!r}: {message}")
        return StorageError(f"S3 {action} of {key!r} failed: {code or status}: {message}")
