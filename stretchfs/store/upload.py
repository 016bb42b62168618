"""Streaming content PUTs: the body goes straight to a temp file while hashing.

twisted.web's `Request` buffers a whole body (to its own temp file above
100 KB) before any handler runs, which would write every upload twice.
`StoreRequest` instead decides in `gotLength` -- as soon as the headers are
in -- whether a `PUT /content/put/<sha1>.<ext>` is acceptable (cluster key,
name, `Content-Length` against `[store] max_put` and `[store] min_free`) and
then writes each chunk into a `PutUpload` in `handleContentChunk`.  The
route handler later verifies the SHA1, commits (fsync + atomic link) and
publishes.  A refused request is answered at once (`refuse_now`) and its
body dropped unwritten; a connection lost mid-body deletes the temp file.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import queue
import threading
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import ResponseDone

from stretchfs.errors import (
    InsufficientStorage,
    PayloadTooLarge,
    PeerUnavailable,
    StretchFSError,
)
from stretchfs.store.layout import ContentStore, parse_name
from stretchfs.web.auth import check_cluster_key
from stretchfs.web.limits import LimitedRequest

log = Logger()

PUT_PREFIX = b"/content/put/"
WRITE_BUFFER_BYTES = 1024 * 1024
FREE_RECHECK_BYTES = 64 * 1024 * 1024
HIGH_WATER_BYTES = 16 * 1024 * 1024
LOW_WATER_BYTES = 4 * 1024 * 1024
PUT_READ_BYTES = 1024 * 1024
WRITEBACK_EVERY_BYTES = 16 * 1024 * 1024


def _load_sync_file_range() -> Callable[[int], None] | None:
    """Linux sync_file_range(SYNC_FILE_RANGE_WRITE): start writeback without waiting."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]

    def start_writeback(fd: int) -> None:
        function(fd, 0, 0, 2)

    return start_writeback


_START_WRITEBACK = _load_sync_file_range()


class _Stage:
    """One thread applying `work` to each queued chunk, in order."""

    def __init__(self, name: str, work: Callable[[bytes], None], pipeline: "_WriterThread",
                 last: Callable[[], None] = lambda: None) -> None:
        self._work = work
        self._last = last
        self._pipeline = pipeline
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.queued = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is _END:
                    break
                try:
                    if self._pipeline.error is None:
                        self._work(item)
                except Exception as exc:  # noqa: BLE001 - reported by finish(), never lost
                    self._pipeline.fail(exc)
                finally:
                    self._pipeline.processed(self, len(item))
            try:
                self._last()
            except Exception as exc:  # noqa: BLE001
                self._pipeline.fail(exc)
        finally:
            self._pipeline.stage_done()


class _WriterThread:
    """Hashes and writes one upload's chunks in two threads of its own.

    The reactor thread only queues chunks; one thread hashes, another writes
    (hashlib and file writes release the GIL, so receiving, hashing and
    writing overlap) and starts the kernel's writeback as it goes, so the
    final fsync is short.  When more than `HIGH_WATER_BYTES` wait in either
    thread `pause()` is called (the socket stops being read); once both are
    below `LOW_WATER_BYTES`, `resume()` -- both on the reactor thread.
    """

    def __init__(self, handle: Any, digest: Any, reactor: Any, pause: Callable[[], None],
                 resume: Callable[[], None]) -> None:
        self._handle = handle
        self._reactor = reactor
        self._pause = pause
        self._resume = resume
        self._lock = threading.Lock()
        self._paused = False
        self._written = 0
        self._left = 2
        self.error: OSError | None = None  # the first failure; later chunks are skipped
        self._done: Deferred[None] = Deferred()
        self._stages = [_Stage("stretchfs-put-hash", digest.update, self),
                        _Stage("stretchfs-put-write", self._write, self, handle.close)]
        for stage in self._stages:
            stage.thread.start()

    def _write(self, data: bytes) -> None:
        self._handle.write(data)
        self._written += len(data)
        if _START_WRITEBACK is not None and self._written >= WRITEBACK_EVERY_BYTES:
            self._written = 0
            self._handle.flush()
            _START_WRITEBACK(self._handle.fileno())

    def put(self, data: bytes) -> None:
        """Queue a chunk (reactor thread)."""
        with self._lock:
            for stage in self._stages:
                stage.queued += len(data)
            pause = (not self._paused
                     and max(stage.queued for stage in self._stages) > HIGH_WATER_BYTES)
            if pause:
                self._paused = True
        for stage in self._stages:
            stage.queue.put(data)
        if pause:
            self._pause()

    def processed(self, stage: _Stage, size: int) -> None:
        """A stage finished a chunk (its thread)."""
        with self._lock:
            stage.queued -= size
            resume = (self._paused
                      and max(s.queued for s in self._stages) < LOW_WATER_BYTES)
            if resume:
                self._paused = False
        if resume:
            self._reactor.callFromThread(self._resume)

    def stage_done(self) -> None:
        """A stage's thread is ending (its thread)."""
        with self._lock:
            self._left -= 1
            last = self._left == 0
            resume = last and self._paused
            if resume:
                self._paused = False
        if resume:
            self._reactor.callFromThread(self._resume)
        if last:
            self._reactor.callFromThread(self._done.callback, None)

    def fail(self, exc: BaseException) -> None:
        """Record the first failure (any thread); it stops the remaining work."""
        if not isinstance(exc, OSError):
            log.error("upload writer failed: {error!r}", error=exc)
            exc = OSError("upload writer failed: {!r}".format(exc))
        with self._lock:
            if self.error is None:
                self.error = exc

    def finish(self, abort: bool = False) -> Deferred[None]:
        """No more chunks: fires once all are hashed and written and the file is closed.

        With `abort`, chunks still queued are skipped.
        """
        if abort:
            self.fail(OSError("upload aborted"))
        for stage in self._stages:
            stage.queue.put(_END)
        return self._done


_END = object()  # no more chunks


class PutUpload:
    """One body being written to a temp file while its SHA1 is computed.

    With a `reactor`, hashing and writing happen in a thread of this upload
    (`_WriterThread`); without one (unit tests, repair fetches) they happen
    in the caller's thread.
    """

    def __init__(self, store: ContentStore, sha1: str, ext: str, max_bytes: int,
                 free_check: Callable[[int], None], *, reactor: Any = None,
                 pause: Callable[[], None] | None = None,
                 resume: Callable[[], None] | None = None, digest: Any = None) -> None:
        self.sha1 = sha1
        self.ext = ext
        self.size = 0
        self.temp_path = store.new_temp_path()
        self._max_bytes = max_bytes
        self._free_check = free_check
        self._next_free_check = FREE_RECHECK_BYTES
        self._hash = digest if digest is not None else hashlib.sha1()
        fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._file: Any = os.fdopen(fd, "wb", buffering=WRITE_BUFFER_BYTES)
        self._writer: _WriterThread | None = None
        if reactor is not None:
            self._writer = _WriterThread(self._file, self._hash, reactor,
                                         pause or _nothing, resume or _nothing)
        self.closed = False

    def write(self, data: bytes) -> None:
        """Append `data`; PayloadTooLarge / InsufficientStorage past the limits."""
        self.size += len(data)
        if self.size > self._max_bytes:
            raise PayloadTooLarge("content larger than {} bytes".format(self._max_bytes))
        if self.size >= self._next_free_check:
            self._next_free_check += FREE_RECHECK_BYTES
            self._free_check(0)
        if self._writer is not None:
            if self._writer.error is not None:
                raise self._writer.error
            self._writer.put(data)
            return
        self._hash.update(data)
        self._file.write(data)

    def hexdigest(self) -> str:
        """SHA1 of everything written (call after `finish`)."""
        return self._hash.hexdigest()

    async def finish(self) -> None:
        """Write what is queued and close the temp file (it stays on disk for `commit`)."""
        if self.closed:
            return
        self.closed = True
        if self._writer is not None:
            await self._writer.finish()
            if self._writer.error is not None:
                raise self._writer.error
        else:
            self._file.close()

    def abort(self) -> None:
        """Stop writing and delete the temp file: nothing of this body is kept."""
        if not self.closed:
            self.closed = True
            if self._writer is not None:
                self._writer.finish(abort=True)
            else:
                try:
                    self._file.close()
                except OSError:
                    pass
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass


def _nothing() -> None:
    return None


class PutReceiver:
    """Decides whether a PUT may start and opens its `PutUpload`."""

    def __init__(self, store: ContentStore, *, cluster_key: str, max_put: int,
                 min_free: int, reactor: Any = None,
                 on_full: Callable[[], Any] | None = None) -> None:
        self.store = store
        self.cluster_key = cluster_key
        self.max_put = max_put
        self.min_free = min_free
        self._reactor = reactor
        self._on_full = on_full

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

    def begin(self, request: Any, name: str, length: int | None,
              transport: Any = None) -> PutUpload:
        """Check key, name, size and space in that order; open the upload."""
        check_cluster_key(request, self.cluster_key)
        sha1, ext = parse_name(name)
        return self.open(sha1, ext, length, transport)

    def open(self, sha1: str, ext: str, length: int | None,
             transport: Any = None) -> PutUpload:
        """`check_size`, then open an upload of `sha1`.`ext` (already validated).

        With a `transport` (a push producer feeding the body) and a reactor,
        the upload hashes and writes in threads of its own and pauses
        `transport` when the disk falls behind.
        """
        self.check_size(length)
        if transport is None or self._reactor is None:
            return PutUpload(self.store, sha1, ext, self.max_put, self.check_space)
        return PutUpload(self.store, sha1, ext, self.max_put, self.check_space,
                         reactor=self._reactor, pause=transport.pauseProducing,
                         resume=transport.resumeProducing)


class ResponseSink(Protocol):
    """Feeds an HTTP client response body into a `PutUpload` (repair fetches).

    `opener(producer)` opens the upload once the body starts; a threaded
    upload pauses and resumes the connection through this sink when the
    disk falls behind.  `done` fires with the received upload, or fails
    with the StretchFSError that refused it (size, space) or PeerUnavailable
    when the body was cut short or no byte arrived for `idle_timeout`
    seconds (not counting time the store itself paused the connection).
    Cancelling `done` stops the download; a failed upload is already aborted.
    """

    def __init__(self, opener: Callable[[Any], PutUpload], *, clock: Any,
                 idle_timeout: float) -> None:
        self._opener = opener
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._idle_call: Any = None
        self._error: Exception | None = None
        self.upload: PutUpload | None = None
        self.done: Deferred[PutUpload] = Deferred(
            lambda _: self._stop(PeerUnavailable("fetch cancelled")))

    def connectionMade(self) -> None:
        """Open the upload and start the idle timer."""
        try:
            self.upload = self._opener(self)
        except (StretchFSError, OSError) as exc:
            self._stop(exc)
            return
        self._arm_idle()

    # IPushProducer for the upload's writer threads (called on the reactor thread)
    def pauseProducing(self) -> None:
        """Stop reading the connection; the idle timer waits too."""
        self._disarm_idle()
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """Read the connection again."""
        if self.upload is not None:
            self._arm_idle()
        if self.transport is not None:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """Drop the connection."""
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        """Write a chunk (the upload refuses what is too large or does not fit)."""
        if self.upload is None:
            return
        if self._idle_call is not None:
            self._idle_call.reset(self._idle_timeout)
        try:
            self.upload.write(data)
        except (StretchFSError, OSError) as exc:
            self._stop(exc)

    def _arm_idle(self) -> None:
        if self._idle_call is None:
            self._idle_call = self._clock.callLater(self._idle_timeout, self._idle)

    def _disarm_idle(self) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def _idle(self) -> None:
        self._idle_call = None
        self._stop(PeerUnavailable("no data for {} s".format(self._idle_timeout)))

    def _stop(self, exc: Exception) -> None:
        self._error = self._error or exc
        self._disarm_idle()
        if self.upload is not None:
            self.upload.abort()
            self.upload = None
        self.stopProducing()

    def connectionLost(self, reason: Any = None) -> None:
        """The body ended: complete, cut short, or stopped by `_stop`."""
        self._disarm_idle()
        upload, self.upload = self.upload, None
        if self.done.called:
            if upload is not None:
                upload.abort()
            return
        if self._error is None and upload is not None and reason is not None \
                and reason.check(ResponseDone):
            self.done.callback(upload)
            return
        if self._error is None:
            self._error = PeerUnavailable("body cut short: {}".format(
                reason.getErrorMessage() if reason is not None else "connection lost"))
        if upload is not None:
            upload.abort()
        error = self._error
        if isinstance(error, OSError):
            log.error("write of a fetched content failed: {error}", error=str(error))
            error = InsufficientStorage("cannot write to this store")
        self.done.errback(error)


def put_name(path: bytes) -> str | None:
    """The `<sha1>.<ext>` part of a PUT path (query dropped), None for other paths."""
    path = path.split(b"?", 1)[0]
    if not path.startswith(PUT_PREFIX):
        return None
    return path[len(PUT_PREFIX):].decode("latin-1")


class StoreRequest(LimitedRequest):
    """A Request that streams `PUT /content/put/...` bodies into the store."""

    receiver: PutReceiver | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.upload: PutUpload | None = None
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
        transport = getattr(self.channel, "transport", None)
        if transport is not None and hasattr(transport, "bufferSize"):
            transport.bufferSize = PUT_READ_BYTES
        try:
            self.upload = self.receiver.begin(self, name, length,  # type: ignore[union-attr]
                                              transport)
        except StretchFSError as exc:
            self.refuse_now(exc)
        except OSError as exc:
            log.error("cannot open a temp file for a PUT: {error}", error=str(exc))
            self.refuse_now(InsufficientStorage("cannot write to this store"))

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
        if self.upload is not None:
            self.upload.abort()
            self.upload = None
        self.refuse_now(exc)

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
