"""StoreClient: streaming PUT body producer, idle timeout, JSON routes."""

from __future__ import annotations

import io

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from stretchfs.errors import PeerUnavailable, UpstreamError
from stretchfs.wire.store import FileProducer, StoreClient
from tests.helpers import CLUSTER_KEY, result_of
from tests.prism.fakes import FakeStore, Network
from tests.prism.harness import sha1_of


class _Consumer:
    def __init__(self, producer_pauses_after: int | None = None) -> None:
        self.data: list[bytes] = []
        self.producer: FileProducer | None = None
        self.limit = producer_pauses_after

    def write(self, data: bytes) -> None:
        self.data.append(data)
        if self.limit is not None and len(self.data) >= self.limit and self.producer:
            self.producer.pauseProducing()


def test_producer_finishes_small_files_at_once() -> None:
    """A file smaller than a chunk is written and the Deferred fires."""
    producer = FileProducer(io.BytesIO(b"abc"), 3)
    consumer = _Consumer()
    d = producer.startProducing(consumer)
    assert isinstance(d, Deferred) and result_of(d) is None
    assert b"".join(consumer.data) == b"abc"


def test_producer_honours_pause_and_resume() -> None:
    """Paused, the producer writes nothing more until resumed."""
    data = b"x" * 100
    producer = FileProducer(io.BytesIO(data), 100, chunk_bytes=10)
    consumer = _Consumer(producer_pauses_after=3)
    consumer.producer = producer
    d = producer.startProducing(consumer)
    assert len(consumer.data) == 3 and not d.called
    consumer.limit = None
    producer.resumeProducing()
    assert b"".join(consumer.data) == data and d.called


def test_producer_fails_when_the_file_shrinks() -> None:
    """A file shorter than announced fails the body instead of sending a short one."""
    producer = FileProducer(io.BytesIO(b"abc"), 10)
    d = producer.startProducing(_Consumer())
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(IOError)


def _client(tmp_path, store: FakeStore | None = None) -> tuple[StoreClient, Network, Clock]:
    network = Network()
    network.add("store", (store or FakeStore("s")).app.resource())
    clock = Clock()
    return StoreClient(network, "http://store", CLUSTER_KEY, 5.0, clock), network, clock


def test_put_sends_the_file_and_returns_the_answer(tmp_path) -> None:
    """put() streams the file and returns the store's {hash, ext, size}."""
    store = FakeStore("s")
    client, network, _ = _client(tmp_path, store)
    path = tmp_path / "f"
    path.write_bytes(b"payload")
    d = Deferred.fromCoroutine(client.put(sha1_of(b"payload"), "bin", str(path), 7))
    network.flush()
    assert result_of(d) == {"hash": sha1_of(b"payload"), "ext": "bin", "size": 7}
    assert store.files[sha1_of(b"payload")] == b"payload"


def test_put_sends_bytes_kept_in_memory(tmp_path) -> None:
    """put() given the bytes themselves (a small upload) sends them, no file involved."""
    store = FakeStore("s")
    client, network, _ = _client(tmp_path, store)
    d = Deferred.fromCoroutine(client.put(sha1_of(b"payload"), "bin", b"payload", 7))
    network.flush()
    assert result_of(d) == {"hash": sha1_of(b"payload"), "ext": "bin", "size": 7}
    assert store.files[sha1_of(b"payload")] == b"payload"
    assert list(tmp_path.iterdir()) == []


def test_put_errors_are_typed(tmp_path) -> None:
    """A 507 is an UpstreamError with the code; a down store is PeerUnavailable."""
    store = FakeStore("s")
    store.mode = "full"
    client, network, _ = _client(tmp_path, store)
    path = tmp_path / "f"
    path.write_bytes(b"payload")
    d = Deferred.fromCoroutine(client.put(sha1_of(b"payload"), "bin", str(path), 7))
    network.flush()
    failure = []
    d.addErrback(failure.append)
    assert failure[0].check(UpstreamError) and failure[0].value.code == 507
    network.down.add("store")
    d = Deferred.fromCoroutine(client.put(sha1_of(b"payload"), "bin", str(path), 7))
    d.addErrback(failure.append)
    assert failure[1].check(PeerUnavailable)


def test_stalled_put_is_cancelled_after_the_idle_timeout(tmp_path) -> None:
    """A PUT with no progress for `timeout` seconds fails with PeerUnavailable."""
    from twisted.internet.testing import MemoryReactorClock

    pending: Deferred = Deferred()

    class _Hang:
        def request(self, *args, **kwargs):
            return pending

    clock = MemoryReactorClock()
    client = StoreClient(_Hang(), "http://store", CLUSTER_KEY, 5.0, clock)
    path = tmp_path / "f"
    path.write_bytes(b"payload")
    d = Deferred.fromCoroutine(client.put(sha1_of(b"payload"), "bin", str(path), 7))
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    failure = []
    d.addErrback(failure.append)
    assert failure and failure[0].check(PeerUnavailable)
    assert clock.getDelayedCalls() == []


def test_exists_and_remove(tmp_path) -> None:
    """exists() and remove() use the store's JSON routes."""
    store = FakeStore("s")
    store.files["a" * 40] = b"zz"
    client, network, _ = _client(tmp_path, store)
    d = Deferred.fromCoroutine(client.exists(["a" * 40, "b" * 40]))
    network.flush()
    answer = result_of(d)
    assert answer["a" * 40]["exists"] and not answer["b" * 40]["exists"]
    d = Deferred.fromCoroutine(client.remove("a" * 40))
    network.flush()
    assert result_of(d) == {"success": "File removed"}
    assert store.files == {}


def _over_memory(tmp_path, size: int = 0) -> tuple[StoreClient, object, str]:
    """A StoreClient on a real treq client over a MemoryReactorClock, and a file of `size`."""
    from twisted.internet.testing import MemoryReactorClock

    from stretchfs.wire.http import make_http_client

    clock = MemoryReactorClock()
    path = tmp_path / "f"
    path.write_bytes(b"x" * size)
    return StoreClient(make_http_client(clock), "http://127.0.0.1:1", CLUSTER_KEY, 5.0,
                       clock), clock, str(path)


def _failure_of(d: Deferred):
    failures: list = []
    d.addErrback(failures.append)
    assert failures, "the call has not failed"
    return failures[0]


def test_put_to_a_frozen_store_gives_up_after_the_timeout(tmp_path) -> None:
    """A PUT whose body a frozen store stopped taking fails after `timeout` and drops the
    connection."""
    from tests.helpers import SilentPeer

    client, clock, path = _over_memory(tmp_path, 4 * 1024 * 1024)
    d = Deferred.fromCoroutine(client.put("a" * 40, "bin", path, 4 * 1024 * 1024))
    peer = SilentPeer(clock, buffer_bytes=512 * 1024).accept()
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    assert _failure_of(d).check(PeerUnavailable)
    assert peer.dropped
    assert clock.getDelayedCalls() == []


def test_put_to_a_store_that_never_answers_gives_up_after_the_timeout(tmp_path) -> None:
    """A PUT whose whole body was sent but which gets no answer fails after `timeout`."""
    from tests.helpers import SilentPeer

    client, clock, path = _over_memory(tmp_path, 1000)
    d = Deferred.fromCoroutine(client.put("a" * 40, "bin", path, 1000))
    peer = SilentPeer(clock).accept()
    assert peer.transport.value().endswith(b"x" * 1000)
    clock.advance(5.1)
    assert _failure_of(d).check(PeerUnavailable)
    assert peer.dropped


def test_put_answer_stalled_after_its_headers_drops_the_connection(tmp_path) -> None:
    """A store that answers a PUT's headers and then stalls its body fails the PUT after
    `timeout` and the connection is dropped."""
    from tests.helpers import SilentPeer

    client, clock, path = _over_memory(tmp_path, 10)
    d = Deferred.fromCoroutine(client.put("a" * 40, "bin", path, 10))
    peer = SilentPeer(clock).accept()
    peer.answer(b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{\"hash\": ")
    clock.advance(5.1)
    assert _failure_of(d).check(PeerUnavailable)
    assert peer.dropped


def test_exists_to_a_silent_store_gives_up_after_the_timeout(tmp_path) -> None:
    """An exists probe to a store that accepts and says nothing fails after `timeout`."""
    from tests.helpers import SilentPeer

    client, clock, _ = _over_memory(tmp_path)
    d = Deferred.fromCoroutine(client.exists(["a" * 40]))
    peer = SilentPeer(clock).accept()
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    assert _failure_of(d).check(PeerUnavailable)
    assert peer.dropped


def test_exists_answer_stalled_after_its_headers_gives_up(tmp_path) -> None:
    """An exists probe whose answer stalls after the headers fails after `timeout`."""
    from tests.helpers import SilentPeer

    client, clock, _ = _over_memory(tmp_path)
    d = Deferred.fromCoroutine(client.exists(["a" * 40]))
    peer = SilentPeer(clock).accept()
    peer.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
    clock.advance(5.1)
    assert _failure_of(d).check(PeerUnavailable)
    assert peer.dropped
    assert clock.getDelayedCalls() == []
