"""ResponseSink (repair fetch bodies): idle timeout, pauses, cancellation."""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from stretchfs.errors import PeerUnavailable
from stretchfs.store.layout import ContentStore
from stretchfs.store.upload import PutUpload, ResponseSink


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


def _sink(tmp_path, clock: Clock) -> tuple[ResponseSink, FakeBodyTransport, ContentStore]:
    store = ContentStore(str(tmp_path))
    store.prepare()
    sink = ResponseSink(lambda producer: PutUpload(store, "0" * 40, "bin", 10**9,
                                                   lambda n: None),
                        clock=clock, idle_timeout=5)
    transport = FakeBodyTransport()
    sink.makeConnection(transport)
    return sink, transport, store


def test_silent_source_is_dropped_after_the_idle_timeout(tmp_path) -> None:
    """No byte for idle_timeout seconds: the download stops, nothing is kept."""
    clock = Clock()
    sink, transport, store = _sink(tmp_path, clock)
    sink.dataReceived(b"abc")
    clock.advance(4)
    sink.dataReceived(b"def")
    clock.advance(4)
    assert not sink.done.called
    clock.advance(1.5)
    assert transport.stopped
    sink.connectionLost(Failure(ConnectionError("stopped")))
    failure = _failure_of(sink)
    assert failure.check(PeerUnavailable) and "no data" in str(failure.value)
    assert os.listdir(store.tmp_dir) == []


def test_time_paused_by_the_store_does_not_count_as_idle(tmp_path) -> None:
    """While the store's own writer paused the connection, the idle timer waits."""
    clock = Clock()
    sink, transport, _ = _sink(tmp_path, clock)
    sink.pauseProducing()
    assert transport.paused
    clock.advance(60)
    assert not transport.stopped and not sink.done.called
    sink.resumeProducing()
    assert not transport.paused
    clock.advance(5.1)
    assert transport.stopped


def test_cancelled_fetch_stops_the_download_and_keeps_nothing(tmp_path) -> None:
    """Cancelling `done` (the caller went away) drops the connection and the temp file,
    also when the body then ends normally."""
    clock = Clock()
    sink, transport, store = _sink(tmp_path, clock)
    sink.dataReceived(b"x" * 1000)
    sink.done.addErrback(lambda _: None)
    sink.done.cancel()
    assert transport.stopped
    sink.connectionLost(Failure(ResponseDone()))
    assert os.listdir(store.tmp_dir) == []
    assert clock.getDelayedCalls() == []


def test_complete_body_hands_over_the_upload(tmp_path) -> None:
    """A body that ends normally fires `done` with the upload, temp file in place."""
    clock = Clock()
    sink, _, store = _sink(tmp_path, clock)
    sink.dataReceived(b"hello")
    sink.connectionLost(Failure(ResponseDone()))
    results: list[PutUpload] = []
    sink.done.addCallback(results.append)
    assert results and results[0].size == 5
    assert len(os.listdir(store.tmp_dir)) == 1
    assert clock.getDelayedCalls() == []
    results[0].abort()


def _failure_of(sink: ResponseSink) -> Failure:
    failures: list[Failure] = []
    sink.done.addErrback(failures.append)
    assert failures
    return failures[0]
