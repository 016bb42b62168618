"""Sinks that hash (SHA1) and write a body to a file as it arrives.

`InlineSink` works on the calling thread (tests, buffered bodies);
`ThreadedSink` hands 1 MiB blocks to a thread pool, in order, and pauses
its producer while too much waits.  Used by multipart uploads and
retrieves.
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure


class InlineSink:
    """Hashes and writes each chunk at once (tests, buffered bodies)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._hash = hashlib.sha1()

    def write(self, chunk: bytes) -> None:
        """Hash and write `chunk`."""
        self._hash.update(chunk)
        self._handle.write(chunk)

    def close(self) -> Deferred[str]:
        """Close the file; fires with the hex SHA1."""
        self._handle.close()
        return succeed(self._hash.hexdigest())

    def cancel(self) -> None:
        """Stop: close the file."""
        _close_quietly(self._handle)


class Backpressure:
    """Bytes waiting to be written, across every sink fed by one connection.

    Past `HIGH_WATER_BYTES` the connection is paused (`pause`); once below
    `LOW_WATER_BYTES`, resumed.  One per request, so a body of many parts
    cannot queue 16 MiB per part.
    """

    HIGH_WATER_BYTES = 16 * 1024 * 1024
    LOW_WATER_BYTES = 4 * 1024 * 1024

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._pause = pause
        self._resume = resume
        self.queued = 0
        self.paused = False

    def queue(self, size: int) -> None:
        """`size` more bytes wait."""
        self.queued += size
        if self.queued > self.HIGH_WATER_BYTES:
            # Every time: the HTTP channel may have resumed the transport meanwhile.
            self.paused = True
            self._pause()

    def written(self, size: int) -> None:
        """`size` bytes are written."""
        self.queued -= size
        if self.paused and self.queued < self.LOW_WATER_BYTES:
            self.paused = False
            self._resume()

    def release(self) -> None:
        """Nothing more will be written: never leave the connection paused."""
        if self.paused:
            self.paused = False
            self._resume()


class ThreadedSink:
    """Hashes and writes in the reactor's thread pool, in order, in 1 MiB blocks.

    The reactor thread keeps parsing the next chunks meanwhile; `flow`
    pauses reading while too much waits.
    """

    BLOCK_BYTES = 1024 * 1024

    def __init__(self, handle: BinaryIO, run: Callable[..., Deferred[Any]],
                 flow: Backpressure) -> None:
        self._handle = handle
        self._hash = hashlib.sha1()
        self._run = run
        self._flow = flow
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._cancelled = False
        self._chain: Deferred[Any] = succeed(None)

    def write(self, chunk: bytes) -> None:
        """Queue `chunk`; a full block goes to a worker thread."""
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= self.BLOCK_BYTES:
            self._submit()

    def _work(self, data: bytes) -> None:
        if not self._cancelled:
            self._hash.update(data)
            self._handle.write(data)

    def _submit(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending = []
        self._pending_bytes = 0
        self._flow.queue(len(data))

        def done(result: Any) -> Any:
            self._flow.written(len(data))
            return result

        self._chain.addCallback(lambda _: self._run(self._work, data)).addBoth(done)

    def close(self) -> Deferred[str]:
        """Flush, close the file; fires with the hex SHA1 once every block is written
        and the file is closed, or with the failure of a block or of the close."""
        self._submit()
        result: Deferred[str] = Deferred()

        def closed(outcome: Any) -> None:
            if isinstance(outcome, Failure):
                _close_quietly(self._handle)
            result.callback(outcome)  # the SHA1, or the Failure

        self._chain.addCallback(lambda _: self._run(self._handle.close))
        self._chain.addCallback(lambda _: self._hash.hexdigest()).addBoth(closed)
        return result

    def cancel(self) -> None:
        """Stop writing; the file is closed once the running block is done."""
        self._cancelled = True
        self._pending = []
        self._flow.release()
        self._chain.addBoth(lambda _: _close_quietly(self._handle))


def _close_quietly(handle: BinaryIO) -> None:
    """Close a file whose content no longer matters."""
    try:
        handle.close()
    except OSError:
        pass
