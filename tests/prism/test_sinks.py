"""Hashing sinks: a failing close or write is reported, never a hang."""

from __future__ import annotations

import hashlib
import io

from twisted.internet.defer import maybeDeferred

from stretchfs.prism.sinks import Backpressure, InlineSink, ThreadedSink


class _DiskFullOnClose(io.BytesIO):
    """A file whose buffered tail cannot be written when it is closed."""

    def close(self) -> None:
        raise OSError(28, "No space left on device")


def _threaded(handle: io.BytesIO) -> ThreadedSink:
    return ThreadedSink(handle, maybeDeferred, Backpressure(lambda: None, lambda: None))


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


def test_back_pressure_is_shared_by_every_part_of_an_upload() -> None:
    """Many parts, each under the pause threshold, still pause the connection together
    once what waits passes it, and resume it once it drains."""
    from twisted.internet.defer import Deferred

    events: list[str] = []
    flow = Backpressure(lambda: events.append("pause"), lambda: events.append("resume"))
    held: list[Deferred] = []

    def held_run(work, data):
        waiting: Deferred = Deferred()
        waiting.addCallback(lambda _: work(data))
        held.append(waiting)
        return waiting

    block = b"z" * ThreadedSink.BLOCK_BYTES
    parts = [ThreadedSink(io.BytesIO(), held_run, flow) for _ in range(20)]
    for sink in parts:
        sink.write(block)  # 1 MiB each: no part alone comes near 16 MiB
    assert flow.queued == 20 * len(block)
    assert "pause" in events
    for waiting in held:
        waiting.callback(None)
    assert flow.queued == 0
    assert events[-1] == "resume"
