"""Hash while writing: a body goes to a file as it arrives, its SHA1 computed on the way.

`HashingFile` gathers chunks into blocks of `BLOCK_BYTES` and hands each block
to an injected executor (`run(function, *args) -> Deferred`: the reactor's
thread pool in production, `maybeDeferred` in unit tests) twice, once to hash
it and once to write it.  Each of the two chains keeps its blocks in order and
the chains run beside each other, so receiving, hashing and writing overlap
(hashlib and file writes release the GIL).  `Backpressure`, shared by every
file fed from one connection, pauses the connection while more than
`Watermarks.high_bytes` wait and resumes it below `Watermarks.low_bytes`.  With
`writeback` (the store), the kernel's writeback starts every
`WRITEBACK_EVERY_BYTES` (Linux `sync_file_range`), so the final fsync is short.

`FileIntake` is one such file with a size cap, deleted when abandoned; it is
the `Intake` of a streamed request body (`web/limits.py`) and, through
`BodyReceiver`, of an HTTP client's response body.  Used by store PUTs and
repair fetches, prism multipart uploads and retrieves.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Generic, TypeVar, cast
from typing import Protocol as TypingProtocol

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import ResponseDone

from stretchfs.errors import PayloadTooLarge, PeerUnavailable, StretchFSError

log = Logger()

Executor = Callable[..., Deferred[Any]]


class Intake(TypingProtocol):
    """A body consumed as it arrives (a store PUT, a prism upload, a fetched file)."""

    def write(self, data: bytes) -> None:
        """Take the next chunk; a StretchFSError refuses the body."""

    def abandon(self) -> None:
        """The body will not complete (refused, cut, or nobody waits): drop it."""


IntakeT = TypeVar("IntakeT", bound=Intake)

BLOCK_BYTES = 256 * 1024
STAGE_JOB_BYTES = 4 * 1024 * 1024
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


@dataclass(frozen=True)
class Watermarks:
    """A connection feeding files is paused while more than `high_bytes` wait to be
    hashed or written, and resumed once fewer than `low_bytes` do."""

    high_bytes: int = 16 * 1024 * 1024
    low_bytes: int = 4 * 1024 * 1024


class Backpressure:
    """Bytes waiting to be hashed or written, across every file fed by one connection.

    Pauses `producer` (the connection: an IPushProducer) past the high
    watermark, resumes it below the low one.  One per request, so a body of
    many parts cannot queue a high watermark per part.
    """

    def __init__(self, producer: Any, marks: Watermarks) -> None:
        self._producer = producer
        self._marks = marks
        self.queued = 0
        self.paused = False

    def queue(self, size: int) -> None:
        """`size` more bytes wait."""
        self.queued += size
        if self.queued > self._marks.high_bytes:
            # Every time: the HTTP channel may have resumed the transport meanwhile.
            self.paused = True
            self._producer.pauseProducing()

    def written(self, size: int) -> None:
        """`size` bytes are hashed and written."""
        self.queued -= size
        if self.paused and self.queued < self._marks.low_bytes:
            self.paused = False
            self._producer.resumeProducing()

    def release(self) -> None:
        """Nothing more will be written: never leave the connection paused."""
        if self.paused:
            self.paused = False
            self._producer.resumeProducing()


class _Stage:
    """One ordered stage (hashing, or writing) of a file's blocks on the executor.

    A job takes queued blocks one after the other until none is left or it
    has done `STAGE_JOB_BYTES`, so while a body streams in, a stage does not
    wait for the reactor thread to hand it each block: one round trip per
    job, not per block.  `done(size)` reports progress on the reactor thread.
    """

    def __init__(self, run: Executor, work: Callable[[bytes], None],
                 done: Callable[[int], None], fail: Callable[[Any], None]) -> None:
        self._run = run
        self._work = work
        self._done = done
        self._fail = fail
        self._blocks: deque[bytes] = deque()   # appended here, taken by the job's thread
        self._running = False                   # only touched on the reactor thread
        self._idle: list[Deferred[None]] = []

    def put(self, data: bytes) -> None:
        """Queue a block; start a job unless one runs (it will take the block)."""
        self._blocks.append(data)
        if not self._running:
            self._start()

    def idle(self) -> Deferred[None]:
        """Fires once every queued block is done."""
        if not self._running:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter

    def _start(self) -> None:
        self._running = True
        self._run(self._drain).addBoth(self._finished)

    def _drain(self) -> int:
        total = 0
        while self._blocks and total < STAGE_JOB_BYTES:
            data = self._blocks.popleft()
            self._work(data)
            total += len(data)
        return total

    def _finished(self, total: Any) -> None:
        self._running = False
        if not isinstance(total, int):     # the executor itself failed: give up the rest
            self._fail(total)
            total = sum(map(len, self._blocks))
            self._blocks.clear()
        self._done(total)
        if self._blocks:
            self._start()
            return
        waiting, self._idle = self._idle, []
        for waiter in waiting:
            waiter.callback(None)


class HashingFile:
    """Writes chunks to `handle` and computes their SHA1, block by block on `run`.

    Hashing and writing are two `_Stage`s that run beside each other.  A body
    that never filled a block (a small upload) is hashed, written and closed
    in one job.  The first failure (a disk error, or anything a block raised,
    reported as an OSError) is kept in `error`; later blocks are skipped and
    `close` fails with it.
    """

    def __init__(self, handle: BinaryIO, run: Executor, flow: Backpressure, *,
                 writeback: bool = False) -> None:
        self._handle = handle
        self._hash = hashlib.sha1()
        self._run = run
        self._flow = flow
        self._writeback = writeback and _START_WRITEBACK is not None
        self._unsynced = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._stopped = False
        self._submitted = False
        self.error: OSError | None = None
        self._progress = [0, 0]            # bytes hashed, bytes written
        self._stages = (_Stage(run, self._guarded(self._hash.update), self._reported(0),
                               self._fail),
                        _Stage(run, self._guarded(self._write), self._reported(1), self._fail))

    def write(self, chunk: bytes) -> None:
        """Queue `chunk`; a full block goes to the stages."""
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= BLOCK_BYTES:
            self._submit()

    def _take(self) -> bytes:
        data = b"".join(self._pending)
        self._pending = []
        self._pending_bytes = 0
        return data

    def _submit(self) -> None:
        if not self._pending:
            return
        data = self._take()
        self._submitted = True
        self._flow.queue(len(data))
        for stage in self._stages:
            stage.put(data)

    def _reported(self, index: int) -> Callable[[int], None]:
        def done(size: int) -> None:
            slowest = min(self._progress)
            self._progress[index] += size
            if min(self._progress) > slowest:
                self._flow.written(min(self._progress) - slowest)
        return done

    def _guarded(self, work: Callable[[bytes], Any]) -> Callable[[bytes], None]:
        """`work` on one block unless an earlier block failed (executor thread)."""
        def guarded(data: bytes) -> None:
            if self.error is None and not self._stopped:
                try:
                    work(data)
                except Exception as exc:  # noqa: BLE001 - reported by close(), never lost
                    self._fail(exc)
        return guarded

    def _write(self, data: bytes) -> None:
        self._handle.write(data)
        if self._writeback:
            self._unsynced += len(data)
            if self._unsynced >= WRITEBACK_EVERY_BYTES:
                self._unsynced = 0
                self._handle.flush()
                _START_WRITEBACK(self._handle.fileno())  # type: ignore[misc]

    def _fail(self, exc: Any) -> None:
        """Keep the first failure (any thread)."""
        exc = getattr(exc, "value", exc)  # a Failure from the executor itself
        if not isinstance(exc, OSError):
            log.error("hashing or writing a body failed: {error!r}", error=exc)
            exc = OSError("writer failed: {!r}".format(exc))
        if self.error is None:
            self.error = exc

    def close(self) -> Deferred[str]:
        """Flush and close the file; fires with the hex SHA1 once every block is
        hashed and written and the file is closed, or fails with the first error."""
        if not self._submitted:
            return Deferred.fromCoroutine(self._close_small(self._take()))
        self._submit()
        return Deferred.fromCoroutine(self._close())

    def _hash_write_close(self, data: bytes) -> None:
        self._hash.update(data)
        self._handle.write(data)
        self._handle.close()

    async def _close_small(self, data: bytes) -> str:
        try:
            await self._run(self._hash_write_close, data)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
            _close_quietly(self._handle)
            raise self.error from None  # type: ignore[misc]
        return self._hash.hexdigest()

    async def _close(self) -> str:
        for stage in self._stages:
            await stage.idle()
        if self.error is None:
            try:
                await self._run(self._handle.close)
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)
        if self.error is not None:
            _close_quietly(self._handle)
            raise self.error
        return self._hash.hexdigest()

    def cancel(self) -> None:
        """Stop writing; the file is closed once the running blocks are done."""
        self._stopped = True
        self._pending = []
        self._flow.release()
        idle = [stage.idle() for stage in self._stages]
        idle[0].addBoth(lambda _: idle[1]).addBoth(lambda _: _close_quietly(self._handle))


def _close_quietly(handle: BinaryIO) -> None:
    """Close a file whose content no longer matters."""
    try:
        handle.close()
    except OSError:
        pass


class FileIntake:
    """A body written to the file at `path` (opened as `handle`) while hashed,
    refused past `max_bytes`; abandoning it deletes the file."""

    def __init__(self, path: str, handle: BinaryIO, run: Executor, flow: Backpressure, *,
                 max_bytes: int, what: str = "content", writeback: bool = False) -> None:
        self.path = path
        self.size = 0
        self.closed = False
        self._max = max_bytes
        self._what = what
        self._file = HashingFile(handle, run, flow, writeback=writeback)

    def write(self, data: bytes) -> None:
        """Append `data`; PayloadTooLarge past `max_bytes`, the writer's OSError once
        a block failed."""
        self.size += len(data)
        if self.size > self._max:
            raise PayloadTooLarge("{} larger than {} bytes".format(self._what, self._max))
        if self._file.error is not None:
            raise self._file.error
        self._file.write(data)

    def finish(self) -> Deferred[str]:
        """No more data: fires with the SHA1 once all is written and the file closed
        (it stays on disk); fails with the first disk error."""
        self.closed = True
        return self._file.close()

    def abandon(self) -> None:
        """Stop writing and delete the file (idempotent)."""
        if not self.closed:
            self.closed = True
            self._file.cancel()
        remove_temp_file(self.path)


def remove_temp_file(path: str) -> None:
    """Delete a temp file; one already gone is fine, another failure is logged."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warn("cannot remove temp file {path}: {error}", path=path, error=str(exc))


class BodyReceiver(Protocol, Generic[IntakeT]):
    """Feeds an HTTP client response body into the intake `opener(self)` opens.

    The intake pauses and resumes the connection through this receiver (an
    IPushProducer) when its writes fall behind.  `done` fires with the intake
    once the body is complete, or fails with what the opener or the intake
    raised (StretchFSError, OSError), or PeerUnavailable when the body was cut
    short or, with an `idle_timeout`, no byte arrived for that long (not
    counting time the intake paused the connection).  Cancelling `done` stops
    the download; a failed or cancelled download's intake is abandoned.
    """

    def __init__(self, opener: Callable[[Any], IntakeT], *, clock: Any,
                 idle_timeout: float | None) -> None:
        self._opener = opener
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._idle_call: Any = None
        self.intake: IntakeT | None = None
        self.done: Deferred[IntakeT] = Deferred(lambda _: self._stop(CancelledError()))

    def connectionMade(self) -> None:
        """Open the intake and start the idle timer."""
        try:
            self.intake = self._opener(self)
        except (StretchFSError, OSError) as exc:
            self._stop(exc)
            return
        self._arm_idle()

    def pauseProducing(self) -> None:
        """Stop reading the connection; the idle timer waits too."""
        self._disarm_idle()
        if self.transport is not None:
            cast(IPushProducer, self.transport).pauseProducing()

    def resumeProducing(self) -> None:
        """Read the connection again."""
        if self.intake is not None:
            self._arm_idle()
        if self.transport is not None:
            cast(IPushProducer, self.transport).resumeProducing()

    def stopProducing(self) -> None:
        """Drop the connection."""
        if self.transport is not None:
            cast(IPushProducer, self.transport).stopProducing()

    def dataReceived(self, data: bytes) -> None:
        """Write a chunk into the intake."""
        if self.intake is None:
            return
        if self._idle_call is not None:
            self._idle_call.reset(self._idle_timeout)
        try:
            self.intake.write(data)
        except (StretchFSError, OSError) as exc:
            self._stop(exc)

    def _arm_idle(self) -> None:
        if self._idle_call is None and self._idle_timeout is not None:
            self._idle_call = self._clock.callLater(self._idle_timeout, self._idle)

    def _disarm_idle(self) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def _idle(self) -> None:
        self._idle_call = None
        self._stop(PeerUnavailable("no data for {} s".format(self._idle_timeout)))

    def _stop(self, exc: BaseException) -> None:
        self._disarm_idle()
        intake, self.intake = self.intake, None
        if intake is not None:
            intake.abandon()
        self.stopProducing()
        if not self.done.called:
            self.done.errback(exc)

    def connectionLost(self, reason: Any = None) -> None:
        """The body ended: complete, cut short, or stopped by `_stop`."""
        self._disarm_idle()
        intake, self.intake = self.intake, None
        if not self.done.called and intake is not None and reason is not None \
                and reason.check(ResponseDone):
            self.done.callback(intake)
            return
        if intake is not None:
            intake.abandon()
        if not self.done.called:
            self.done.errback(PeerUnavailable("body cut short: {}".format(
                reason.getErrorMessage() if reason is not None else "connection lost")))
