"""Hash-while-writing (`HashingFile`, `FileIntake`) and `BodyReceiver`: order, back-pressure,
failures reported (never a hang), idle timeout, cancellation."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from stretchfs.errors import PayloadTooLarge, PeerUnavailable
from stretchfs.web.intake import (
    BLOCK_BYTES,
    Backpressure,
    BodyReceiver,
    FileIntake,
    HashingFile,
    Watermarks,
)


class HeldExecutor:
    """An executor whose jobs wait until `drain` runs them, in submission order."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Deferred, Any, tuple]] = []

    def __call__(self, work: Any, *args: Any) -> Deferred:
        d: Deferred = Deferred()
        self.jobs.append((d, work, args))
        return d

    def drain(self) -> None:
        while self.jobs:
            d, work, args = self.jobs.pop(0)
            d.callback(work(*args))


class _KeptOpen(io.BytesIO):
    """A file whose bytes stay readable after close."""

    def close(self) -> None:
        pass


class _DiskFullOnClose(io.BytesIO):
    """A file whose buffered tail cannot be written when it is closed."""

    def close(self) -> None:
        raise OSError(28, "No space left on device")


class _BrokenFile(io.BytesIO):
    """A file whose writes fail with something other than a disk error."""

    def write(self, data: Any) -> int:
        raise ValueError("driver broke")


class Producer:
    """Records pause/resume of the connection feeding files."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def pauseProducing(self) -> None:  # noqa: N802
        self.events.append("pause")

    def resumeProducing(self) -> None:  # noqa: N802
        self.events.append("resume")


def _quiet_flow() -> Backpressure:
    return Backpressure(Producer(), Watermarks())


def _outcome(d: Deferred) -> list[Any]:
    results: list[Any] = []
    d.addBoth(results.append)
    return results


def test_close_reports_the_sha1_once_everything_is_written() -> None:
    """close() fires with the SHA1 of every byte, all written to the file in order."""
    handle = _KeptOpen()
    run = HeldExecutor()
    sink = HashingFile(handle, run, _quiet_flow())
    data = os.urandom(3 * BLOCK_BYTES + 7)
    for offset in range(0, len(data), 65536):
        sink.write(data[offset:offset + 65536])
    results = _outcome(sink.close())
    assert results == []
    run.drain()
    assert results == [hashlib.sha1(data).hexdigest()]
    assert handle.getvalue() == data


def test_a_failing_close_is_reported_not_hung() -> None:
    """A close that fails (disk full on the last flush) fails close()'s Deferred."""
    sink = HashingFile(_DiskFullOnClose(), maybeDeferred, _quiet_flow())
    sink.write(b"tail")
    [result] = _outcome(sink.close())
    assert result.check(OSError)


def test_any_block_failure_is_reported_as_a_disk_error() -> None:
    """A write failing with a non-OSError stops the writes and fails close() with an OSError."""
    sink = HashingFile(_BrokenFile(), maybeDeferred, _quiet_flow())
    sink.write(b"x" * BLOCK_BYTES)
    assert isinstance(sink.error, OSError)
    [result] = _outcome(sink.close())
    assert result.check(OSError)


def test_cancel_after_a_failed_close_is_quiet() -> None:
    """Cancelling a file that cannot be closed raises nothing."""
    sink = HashingFile(_DiskFullOnClose(), maybeDeferred, _quiet_flow())
    sink.write(b"abc")
    sink.cancel()


def test_back_pressure_is_shared_by_every_file_of_a_connection() -> None:
    """Many files, each under the pause threshold, still pause the connection together
    once what waits passes it, and resume it once it drains."""
    producer = Producer()
    events = producer.events
    flow = Backpressure(producer, Watermarks(16 * BLOCK_BYTES, 4 * BLOCK_BYTES))
    run = HeldExecutor()
    block = b"z" * BLOCK_BYTES
    for _ in range(20):
        HashingFile(io.BytesIO(), run, flow).write(block)  # no file alone nears the mark
    assert flow.queued == 20 * len(block)
    assert events and set(events) == {"pause"}
    run.drain()
    assert flow.queued == 0
    assert events[-1] == "resume"


def test_file_intake_refuses_bytes_past_its_limit_and_abandon_deletes_it(tmp_path) -> None:
    """A FileIntake stops at max_bytes with PayloadTooLarge; abandoning removes its file."""
    path = str(tmp_path / "body")
    intake = FileIntake(path, open(path, "wb"), maybeDeferred, _quiet_flow(), max_bytes=10,
                        what="upload")
    intake.write(b"x" * 10)
    try:
        intake.write(b"y")
    except PayloadTooLarge as exc:
        assert "upload larger than 10 bytes" in str(exc)
    else:
        raise AssertionError("expected PayloadTooLarge")
    intake.abandon()
    assert os.listdir(tmp_path) == []


class FakeBodyTransport:
    """The producer a response body is delivered through."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False

    def stopProducing(self) -> None:  # noqa: N802
        self.stopped = True


def _receiver(tmp_path, clock: Clock) -> tuple[BodyReceiver, FakeBodyTransport]:
    path = str(tmp_path / "body")
    receiver: BodyReceiver = BodyReceiver(
        lambda producer: FileIntake(path, open(path, "wb"), maybeDeferred,
                                    Backpressure(producer, Watermarks()), max_bytes=10**9),
        clock=clock, idle_timeout=5)
    transport = FakeBodyTransport()
    receiver.makeConnection(transport)
    return receiver, transport


def _failure_of(receiver: BodyReceiver) -> Failure:
    failures: list[Failure] = []
    receiver.done.addErrback(failures.append)
    assert failures
    return failures[0]


def test_silent_source_is_dropped_after_the_idle_timeout(tmp_path) -> None:
    """No byte for idle_timeout seconds: the download stops, nothing is kept."""
    clock = Clock()
    receiver, transport = _receiver(tmp_path, clock)
    receiver.dataReceived(b"abc")
    clock.advance(4)
    receiver.dataReceived(b"def")
    clock.advance(4)
    assert not receiver.done.called
    clock.advance(1.5)
    assert transport.stopped
    receiver.connectionLost(Failure(ConnectionError("stopped")))
    failure = _failure_of(receiver)
    assert failure.check(PeerUnavailable) and "no data" in str(failure.value)
    assert os.listdir(tmp_path) == []


def test_time_paused_by_the_intake_does_not_count_as_idle(tmp_path) -> None:
    """While the intake's writes paused the connection, the idle timer waits."""
    clock = Clock()
    receiver, transport = _receiver(tmp_path, clock)
    receiver.pauseProducing()
    assert transport.paused
    clock.advance(60)
    assert not transport.stopped and not receiver.done.called
    receiver.resumeProducing()
    assert not transport.paused
    clock.advance(5.1)
    assert transport.stopped


def test_cancelled_download_stops_and_keeps_nothing(tmp_path) -> None:
    """Cancelling `done` (the caller went away) drops the connection and the file,
    also when the body then ends normally."""
    clock = Clock()
    receiver, transport = _receiver(tmp_path, clock)
    receiver.dataReceived(b"x" * 1000)
    receiver.done.cancel()
    assert _failure_of(receiver).check(CancelledError)
    assert transport.stopped
    receiver.connectionLost(Failure(ResponseDone()))
    assert os.listdir(tmp_path) == []
    assert clock.getDelayedCalls() == []


def test_body_cut_short_keeps_nothing(tmp_path) -> None:
    """A body whose connection is lost before its end fails with PeerUnavailable."""
    clock = Clock()
    receiver, _ = _receiver(tmp_path, clock)
    receiver.dataReceived(b"x" * 1000)
    receiver.connectionLost(Failure(ConnectionError("reset")))
    assert _failure_of(receiver).check(PeerUnavailable)
    assert os.listdir(tmp_path) == []


def test_complete_body_hands_over_the_intake(tmp_path) -> None:
    """A body that ends normally fires `done` with the intake, its file in place."""
    clock = Clock()
    receiver, _ = _receiver(tmp_path, clock)
    receiver.dataReceived(b"hello")
    receiver.connectionLost(Failure(ResponseDone()))
    results: list[FileIntake] = []
    receiver.done.addCallback(results.append)
    assert results and results[0].size == 5
    assert _outcome(results[0].finish()) == [hashlib.sha1(b"hello").hexdigest()]
    assert os.listdir(tmp_path) == ["body"]
    assert clock.getDelayedCalls() == []
