"""Streaming content PUTs: the body goes straight to a temp file while hashing.

twisted.web's `Request` buffers a whole body (to its own temp file above
100 KB) before any handler runs, which would write every upload twice.  The
store's Site uses `limited_request(receiver.open_request)` instead: as soon as
the headers are in, `open_request` decides whether a
`PUT /content/put/<sha1>.<ext>` is acceptable (cluster key, name,
`Content-Length` against `[store] max_put` and `[store] min_free`) and opens a
`PutUpload` that takes each chunk (`web/intake.py` hashes and writes it).  The
route handler later verifies the SHA1, commits (fsync + atomic link) and
publishes.  A refused request is answered at once and its body dropped
unwritten; a connection lost mid-body deletes the temp file.  Repair fetches
feed a `PutUpload` the same way (`PutReceiver.open`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.logger import Logger

from stretchfs.errors import InsufficientStorage, PayloadTooLarge
from stretchfs.store.layout import ContentStore, parse_name
from stretchfs.web.auth import check_cluster_key
from stretchfs.web.intake import Backpressure, Executor, FileIntake, Watermarks
from stretchfs.web.limits import LimitedRequest

log = Logger()

PUT_PREFIX = b"/content/put/"
WRITE_BUFFER_BYTES = 1024 * 1024
FREE_RECHECK_BYTES = 64 * 1024 * 1024
PUT_READ_BYTES = 1024 * 1024


class PutUpload(FileIntake):
    """One body of `sha1`.`ext` being written to a temp file while its SHA1 is computed;
    `[store] min_free` is checked again every `FREE_RECHECK_BYTES`."""

    def __init__(self, store: ContentStore, sha1: str, ext: str, max_bytes: int,
                 free_check: Callable[[int], None], run: Executor, flow: Backpressure) -> None:
        path = store.new_temp_path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        super().__init__(path, os.fdopen(fd, "wb", buffering=WRITE_BUFFER_BYTES), run, flow,
                         max_bytes=max_bytes, writeback=True)
        self.sha1 = sha1
        self.ext = ext
        self._free_check = free_check
        self._next_free_check = FREE_RECHECK_BYTES

    def write(self, data: bytes) -> None:
        """Append `data`; PayloadTooLarge / InsufficientStorage past the limits or
        when the disk fails."""
        try:
            if self.size + len(data) >= self._next_free_check:
                self._next_free_check += FREE_RECHECK_BYTES
                self._free_check(0)
            super().write(data)
        except OSError as exc:
            log.error("write of {sha1} failed: {error}", sha1=self.sha1, error=str(exc))
            raise InsufficientStorage("cannot write to this store") from None

    def abandon(self) -> None:
        """Delete the temp file: nothing of this body is kept."""
        if not self.closed:
            log.info("upload of {sha1} abandoned after {size} bytes", sha1=self.sha1,
                     size=self.size)
        super().abandon()


class PutReceiver:
    """Decides whether a PUT may start and opens its `PutUpload`.

    Uploads hash and write on `run` (the reactor's thread pool in
    production) and pause their connection past the `marks`.
    """

    def __init__(self, store: ContentStore, *, cluster_key: str, max_put: int,
                 min_free: int, run: Executor, on_full: Callable[[], Any] | None = None,
                 marks: Watermarks = Watermarks()) -> None:
        self.store = store
        self.cluster_key = cluster_key
        self.max_put = max_put
        self.min_free = min_free
        self._run = run
        self._on_full = on_full
        self._marks = marks

    def check_space(self, incoming: int) -> None:
        """InsufficientStorage when `incoming` more bytes would leave less than min_free."""
        free = self.store.disk_usage().free
        if free - incoming < self.min_free:
            if self._on_full is not None:
                self._on_full()
            raise InsufficientStorage("not enough free space on this store")

    def check_size(self, length: int | None) -> None:
        """PayloadTooLarge past `max_put`, InsufficientStorage past `min_free`."""
        if length is not None and length > self.max_put:
            raise PayloadTooLarge("content larger than {} bytes".format(self.max_put))
        self.check_space(length or 0)

    def open_request(self, request: LimitedRequest, length: int | None) -> PutUpload | None:
        """The upload of a `PUT /content/put/<sha1>.<ext>` (None for other requests),
        after checking key, name, size and space in that order."""
        method, path = request.head()
        if method != b"PUT" or not path.startswith(PUT_PREFIX):
            return None
        check_cluster_key(request, self.cluster_key)
        sha1, ext = parse_name(path[len(PUT_PREFIX):].decode("latin-1"))
        transport = request.transport
        if transport is not None and hasattr(transport, "bufferSize"):
            transport.bufferSize = PUT_READ_BYTES
        return self.open(sha1, ext, length, transport)

    def open(self, sha1: str, ext: str, length: int | None, producer: Any) -> PutUpload:
        """`check_size`, then open an upload of `sha1`.`ext` (already validated) that
        pauses `producer` (the connection feeding it) while the disk falls behind."""
        self.check_size(length)
        try:
            return PutUpload(self.store, sha1, ext, self.max_put, self.check_space,
                             self._run, Backpressure(producer, self._marks))
        except OSError as exc:
            log.error("cannot open a temp file for {sha1}: {error}", sha1=sha1,
                      error=str(exc))
            raise InsufficientStorage("cannot write to this store") from None
