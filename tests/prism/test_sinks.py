"""Hashing sinks: a failing close or write is reported, never a hang."""

from __future__ import annotations

import hashlib
import io

from twisted.internet.defer import maybeDeferred

from stretchfs.prism.sinks import InlineSink, ThreadedSink


class _DiskFullOnClose(io.BytesIO):
    """A file whose buffered tail cannot be written when it is closed."""

    def close(self) -> None:
        raise OSError(28, "No space left on device")


def _threaded(handle: io.BytesIO) -> ThreadedSink:
    return ThreadedSink(handle, maybeDeferred, lambda: None, lambda: None)


def test_threaded_close_reports_the_sha1_once_everything_is_written() -> None:
    """close() fires with the SHA1 of every byte, all written to the file."""
    handle = io.BytesIO()
    handle.close = lambda: None  # keep the bytes readable
    sink = _threaded(handle)
    data = b"x" * (3 * ThreadedSink.BLOCK_BYTES + 7)
    for offset in range(0, len(data), 65536):
        sink.write(data[offset:offset + 65536])
    results: list[object] = []
    sink.close().addBoth(results.append)
    assert results == [hashlib.sha1(data).hexdigest()]
    assert handle.getvalue() == data


def test_threaded_close_failure_is_reported_not_hung() -> None:
    """A close that fails (disk full on the last flush) fails close()'s Deferred."""
    sink = _threaded(_DiskFullOnClose())
    sink.write(b"tail")
    results: list[object] = []
    sink.close().addBoth(results.append)
    assert len(results) == 1
    assert results[0].check(OSError)  # type: ignore[attr-defined]


def test_cancel_after_a_failed_close_is_quiet() -> None:
    """Cancelling a sink whose file cannot be closed raises nothing."""
    InlineSink(_DiskFullOnClose()).cancel()
    sink = _threaded(_DiskFullOnClose())
    sink.write(b"abc")
    sink.cancel()
