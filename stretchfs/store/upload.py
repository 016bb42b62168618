"""Streaming content PUTs: the body goes straight to a temp file while hashing.

twisted.web's `Request` buffers a whole body (to its own temp file above
100 KB) before any handler runs, which would write every upload twice.
`StoreRequest` instead decides in `gotLength` -- as soon as the headers are
in -- whether a `PUT /content/put/<sha1>.<ext>` is acceptable (cluster key,
name, `Content-Length` against `[store] max_put` and `[store] min_free`) and
then writes each chunk into a `PutUpload` in `handleContentChunk`.  The
route handler later verifies the SHA1, commits (fsync + atomic link) and
publishes.  A refused request's body is read and dropped, never written,
and the handler answers the refusal; a connection lost mid-body deletes the
temp file.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any, Callable

from twisted.logger import Logger
from twisted.web.server import Request

from stretchfs.errors import InsufficientStorage, PayloadTooLarge, StretchFSError
from stretchfs.store.layout import ContentStore, parse_name
from stretchfs.web.auth import check_cluster_key

log = Logger()

PUT_PREFIX = b"/content/put/"
WRITE_BUFFER_BYTES = 1024 * 1024
FREE_RECHECK_BYTES = 64 * 1024 * 1024


class PutUpload:
    """One body being written to a temp file while its SHA1 is computed."""

    def __init__(self, store: ContentStore, sha1: str, ext: str, max_bytes: int,
                 free_check: Callable[[int], None]) -> None:
        self.sha1 = sha1
        self.ext = ext
        self.size = 0
        self.temp_path = store.new_temp_path()
        self._max_bytes = max_bytes
        self._free_check = free_check
        self._next_free_check = FREE_RECHECK_BYTES
        self._hash = hashlib.sha1()
        fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._file: Any = os.fdopen(fd, "wb", buffering=WRITE_BUFFER_BYTES)
        self.closed = False

    def write(self, data: bytes) -> None:
        """Append `data`; PayloadTooLarge / InsufficientStorage past the limits."""
        self.size += len(data)
        if self.size > self._max_bytes:
            raise PayloadTooLarge("content larger than {} bytes".format(self._max_bytes))
        if self.size >= self._next_free_check:
            self._next_free_check += FREE_RECHECK_BYTES
            self._free_check(0)
        self._hash.update(data)
        self._file.write(data)

    def hexdigest(self) -> str:
        """SHA1 of everything written so far."""
        return self._hash.hexdigest()

    def close(self) -> None:
        """Flush and close the temp file (it stays on disk for `commit`)."""
        if not self.closed:
            self.closed = True
            self._file.close()

    def abort(self) -> None:
        """Close and delete the temp file: nothing of this body is kept."""
        try:
            self.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass


class PutReceiver:
    """Decides whether a PUT may start and opens its `PutUpload`."""

    def __init__(self, store: ContentStore, *, cluster_key: str, max_put: int,
                 min_free: int) -> None:
        self.store = store
        self.cluster_key = cluster_key
        self.max_put = max_put
        self.min_free = min_free

    def check_space(self, incoming: int) -> None:
        """InsufficientStorage when `incoming` more bytes would leave less than min_free."""
        free = self.store.disk_usage().free
        if free - incoming < self.min_free:
            raise InsufficientStorage("not enough free space on this store")

    def begin(self, request: Any, name: str, length: int | None) -> PutUpload:
        """Check key, name, size and space in that order; open the upload."""
        check_cluster_key(request, self.cluster_key)
        sha1, ext = parse_name(name)
        if length is not None and length > self.max_put:
            raise PayloadTooLarge("content larger than {} bytes".format(self.max_put))
        self.check_space(length or 0)
        return PutUpload(self.store, sha1, ext, self.max_put, self.check_space)


def put_name(path: bytes) -> str | None:
    """The `<sha1>.<ext>` part of a PUT path (query dropped), None for other paths."""
    path = path.split(b"?", 1)[0]
    if not path.startswith(PUT_PREFIX):
        return None
    return path[len(PUT_PREFIX):].decode("latin-1")


class StoreRequest(Request):
    """A Request that streams `PUT /content/put/...` bodies into the store."""

    receiver: PutReceiver | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.upload: PutUpload | None = None
        self.upload_error: StretchFSError | None = None
        self.streamed = False

    def gotLength(self, length: int | None) -> None:
        """Open a streaming upload for content PUTs, else buffer as usual."""
        command = getattr(self.channel, "_command", None)
        path = getattr(self.channel, "_path", None)
        name = put_name(path) if command == b"PUT" and path and self.receiver else None
        if name is None:
            super().gotLength(length)
            return
        self.streamed = True
        self.content = io.BytesIO()
        try:
            self.upload = self.receiver.begin(self, name, length)  # type: ignore[union-attr]
        except StretchFSError as exc:
            self.upload_error = exc
        except OSError as exc:
            log.error("cannot open a temp file for a PUT: {error}", error=str(exc))
            self.upload_error = InsufficientStorage("cannot write to this store")

    def handleContentChunk(self, data: bytes) -> None:
        """Write a body chunk into the upload (dropped when the PUT was refused)."""
        if not self.streamed:
            super().handleContentChunk(data)
            return
        upload = self.upload
        if upload is None:
            return
        try:
            upload.write(data)
        except StretchFSError as exc:
            self._fail_upload(exc)
        except OSError as exc:
            log.error("write of a PUT failed: {error}", error=str(exc))
            self._fail_upload(InsufficientStorage("cannot write to this store"))

    def _fail_upload(self, exc: StretchFSError) -> None:
        self.upload_error = exc
        if self.upload is not None:
            self.upload.abort()
            self.upload = None

    def claim_upload(self) -> PutUpload | None:
        """Hand the finished upload to the handler (connection loss no longer aborts it)."""
        upload, self.upload = self.upload, None
        return upload

    def connectionLost(self, reason: Any) -> None:
        """A client gone mid-body leaves nothing behind."""
        if self.upload is not None:
            log.info("PUT of {sha1} abandoned after {size} bytes: connection lost",
                     sha1=self.upload.sha1, size=self.upload.size)
            self.upload.abort()
            self.upload = None
        super().connectionLost(reason)


def request_factory(receiver: PutReceiver) -> Callable[..., StoreRequest]:
    """A Site `requestFactory` whose requests stream PUTs into `receiver`."""

    class _BoundStoreRequest(StoreRequest):
        pass

    _BoundStoreRequest.receiver = receiver
    return _BoundStoreRequest
