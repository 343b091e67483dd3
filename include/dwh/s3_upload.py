"""How :class:`~include.dwh.s3.S3Store` writes an object: :class:`ObjectWriter` streams it in parts.

Memory stays bounded whatever the object size. Every write goes through :class:`ObjectWriter`, which holds at most one part (``part_size``,
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
:class:`ConflictError` and writes nothing; the caller retries with fresh data. Some S3-compatible stores
(moto 5.2 among them) ignore ``IfMatch`` on CompleteMultipartUpload, so the writer re-reads the ETag
just before completing: on those stores a change in the last milliseconds can still slip through; on
S3 itself the condition is atomic.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from include.dwh.s3_keys import ConflictError, InvalidArgumentError

if TYPE_CHECKING:
    from include.dwh.s3 import S3Store

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3: every part of a multipart upload but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_COPY_PART_SIZE = 512 * MIB  # server-side copies: few requests, each short enough not to time out
CHUNK_SIZE = MIB  # reads from request bodies and S3 bodies


class Readable(Protocol):
    """What uploads read from: a file, a ``BytesIO``, a request's body stream."""

    def read(self, size: int = ..., /) -> bytes: ...


def version_of(response: dict[str, Any]) -> str | None:
    """The write's version id, or None when the bucket does not version it: S3 (and moto, even for an
    unversioned bucket) names that the ``"null"`` version."""
    version = response.get("VersionId")
    return None if version in (None, "null") else version


@dataclass(frozen=True)
class PatchSource:
    """The object a patch rewrites, as read at its start: every later read is conditional on it."""

    key: str
    etag: str
    version_id: str | None


class ObjectWriter:
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

    def __enter__(self) -> ObjectWriter:
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

    def copy_range(self, source: PatchSource, start: int, end: int) -> None:
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
        with self._store.translate_errors(self._action, self._key):
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
            "version_id": version_of(response),
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
                raise ConflictError(
                    f"object {self._key!r} was changed by another writer during the {self._action}; retry"
                )
            args["IfMatch"] = self._if_match
        response = self._client.complete_multipart_upload(**args)
        self._upload_id = None
        return response

    def _read_range(self, source: PatchSource, start: int, end: int) -> None:
        args: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": source.key,
            "Range": f"bytes={start}-{end - 1}",
            "IfMatch": source.etag,
        }
        if source.version_id:
            args["VersionId"] = source.version_id
        with self._store.translate_errors(self._action, self._key):
            body = self._client.get_object(**args)["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK_SIZE):
                    self.write(chunk)
            finally:
                body.close()

    def _copy_parts(self, source: PatchSource, start: int, end: int) -> None:
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
            with self._store.translate_errors(self._action, self._key):
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
        with self._store.translate_errors(self._action, self._key):
            response = self._client.upload_part(**args)
        self._add_part(response)
        self._buffer = io.BytesIO()

    def _started(self) -> str:
        """The multipart upload's id, starting it on first use; refuses a part beyond S3's 10,000th."""
        if len(self._parts) >= MAX_PARTS:
            raise InvalidArgumentError(
                f"object {self._key!r} would need more than {MAX_PARTS} parts of "
                f"{self._store.part_size} bytes; configure a larger part_size"
            )
        if self._upload_id is None:
            args = dict(self._object_args)
            if self._store.checksum_algorithm:
                args["ChecksumAlgorithm"] = self._store.checksum_algorithm
            with self._store.translate_errors(self._action, self._key):
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
