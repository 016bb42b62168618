"""Repair fetches over real loopback HTTP: the body is hashed and written in the
reactor's thread pool, the connection is paused when the disk falls behind, and a
cut-short or stalled source leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from stretchfs.errors import PeerUnavailable
from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.store.content import ContentService, DiskMonitor
from stretchfs.store.inventory import SyncGuard
from stretchfs.store.journal import Journal
from stretchfs.store.layout import ContentStore
from stretchfs.store.leaving import LeavingCopies
from stretchfs.store.publisher import InventoryPublisher
from stretchfs.store.stats import StoreStats
from stretchfs.store.upload import PutReceiver
from stretchfs.threads import thread_runner
from stretchfs.web.intake import Backpressure, Watermarks
from stretchfs.wire.store import StoreClient
from tests.helpers import CLUSTER_KEY
from tests.store.harness import FakeMaster, direct

DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA1 = hashlib.sha1(DATA).hexdigest()


class SourceStore(Resource):
    """Stands in for another store's `POST /content/download`.

    `mode` is "whole" (every byte), "short" (half the bytes, then the
    connection closes), "stall" (half the bytes, then nothing), "silent"
    (nothing at all) or "error-stall" (a 500 whose body stalls).
    """

    isLeaf = True

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.requests: list[Any] = []

    def render_POST(self, request: Any) -> Any:
        self.requests.append(request)
        if self.mode == "silent":
            return NOT_DONE_YET
        if self.mode == "error-stall":
            request.setResponseCode(500)
            request.setHeader(b"Content-Length", b"100")
            request.write(b'{"error": ')
            return NOT_DONE_YET
        request.setHeader(b"Content-Length", str(len(DATA)).encode())
        request.setHeader(b"X-StretchFS-Ext", b"bin")
        if self.mode == "whole":
            return DATA
        request.write(DATA[: len(DATA) // 2])
        if self.mode == "short":
            reactor.callLater(0.05, request.transport.loseConnection)
        return NOT_DONE_YET


async def _fetch_from(tmp_path: Any, mode: str, *, idle_timeout: float = 30.0) -> tuple[
        ContentService, FakeMaster, Any]:
    source = SourceStore(mode)
    port = reactor.listenTCP(0, Site(source), interface="127.0.0.1")
    store = ContentStore(str(tmp_path / "store2"))
    store.prepare()
    journal = Journal(store.journal_dir)
    journal.open()
    master = FakeMaster()
    publisher = InventoryPublisher(journal, master, "store2", clock=reactor, batch_size=100,
                                   run_blocking=direct)
    publisher.startService()
    receiver = PutReceiver(store, cluster_key=CLUSTER_KEY, max_put=1 << 30, min_free=0,
                           run=thread_runner(reactor), marks=Watermarks(64 * 1024, 16 * 1024))
    peers = Peers(self_name="store2")
    peers.set_registry([PeerRecord(name="store1", role="store", host="127.0.0.1",
                                   port=port.getHost().port, ping_port=0,
                                   url="http://127.0.0.1:{}".format(port.getHost().port))])
    content = ContentService(store, receiver, publisher, stats=StoreStats(), guard=SyncGuard(),
                             disk=DiskMonitor(store, 0, reactor), run_blocking=direct,
                             leaving=LeavingCopies(store, 0.0, reactor, direct),
                             peers=peers, store_client=lambda record: StoreClient(
                                 treq, record.url, CLUSTER_KEY, idle_timeout, reactor))
    try:
        # bounded: a fetch that ignores its own deadline fails the test instead of hanging it
        outcome: Any = await Deferred.fromCoroutine(content.fetch(SHA1, None, "store1")
                                                    ).addTimeout(idle_timeout + 5, reactor)
    except Exception as exc:  # the test inspects it
        outcome = exc
    finally:
        for request in source.requests:
            if not request.finished and request.transport is not None:
                request.transport.loseConnection()
        await port.stopListening()
        await publisher.stopService()
        journal.close()
    return content, master, outcome


def _leftovers(content: ContentService) -> list[str]:
    return os.listdir(content.store.tmp_dir)


@pytest_twisted.ensureDeferred
async def test_fetch_streams_through_the_thread_pool_with_back_pressure(
        tmp_path, monkeypatch) -> None:
    """A fetch far above the pause threshold pauses the source and stores a verified copy."""
    pauses: list[bool] = []
    original_queue = Backpressure.queue

    def counting_queue(flow: Backpressure, size: int) -> None:
        original_queue(flow, size)
        if flow.paused:
            pauses.append(True)

    monkeypatch.setattr(Backpressure, "queue", counting_queue)
    content, master, outcome = await _fetch_from(tmp_path, "whole")
    stored, created = outcome
    assert created and stored.size == len(DATA)
    with open(stored.path, "rb") as handle:
        assert handle.read() == DATA
    assert pauses, "the source connection was never paused"
    assert master.changes() == [{"op": "add", "hash": SHA1, "ext": "bin", "size": len(DATA)}]
    assert _leftovers(content) == []


@pytest_twisted.ensureDeferred
async def test_fetch_cut_short_keeps_nothing(tmp_path) -> None:
    """A source that closes mid-body: 503-class error, no file, no temp file, no publish."""
    content, master, outcome = await _fetch_from(tmp_path, "short")
    assert isinstance(outcome, PeerUnavailable)
    assert content.store.find(SHA1) is None
    assert master.changes() == []
    assert _leftovers(content) == []


@pytest_twisted.ensureDeferred
async def test_fetch_from_a_stalled_source_gives_up(tmp_path) -> None:
    """A source that stops sending mid-body is dropped after the idle timeout."""
    content, master, outcome = await _fetch_from(tmp_path, "stall", idle_timeout=0.3)
    assert isinstance(outcome, PeerUnavailable)
    assert "no data" in str(outcome)
    assert content.store.find(SHA1) is None
    assert master.changes() == []
    assert _leftovers(content) == []


@pytest.mark.parametrize("mode", ["silent", "error-stall"])
@pytest_twisted.ensureDeferred
async def test_fetch_from_a_source_that_says_nothing_gives_up(tmp_path, mode: str) -> None:
    """A source that accepts and never answers, or stalls an error answer after its
    headers, fails the fetch as unavailable after the timeout, keeping nothing."""
    started = reactor.seconds()
    content, master, outcome = await _fetch_from(tmp_path, mode, idle_timeout=0.5)
    assert isinstance(outcome, PeerUnavailable), repr(outcome)
    assert 0.5 <= reactor.seconds() - started < 2.0
    assert content.store.find(SHA1) is None
    assert master.changes() == []
