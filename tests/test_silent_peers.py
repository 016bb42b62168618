"""Every kind of outgoing call over real loopback sockets gives up after its timeout
against a peer that accepts the connection and then says nothing, or answers the
headers and then stalls: prism -> store PUT and probe, node -> master JSON and
NDJSON (store -> store fetch: tests/store/test_fetch_stream.py)."""

from __future__ import annotations

import hashlib
from typing import Any, Awaitable, Callable

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from stretchfs.errors import PeerUnavailable
from stretchfs.wire.http import make_http_client
from stretchfs.wire.master import MasterClient
from stretchfs.wire.store import StoreClient
from tests.helpers import CLUSTER_KEY

TIMEOUT_SECONDS = 0.5
PUT_BYTES = 32 * 1024 * 1024  # far more than loopback socket buffers take
STALLED_JSON = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\": "
STALLED_NDJSON = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"e\r\n{\"hash\": \"a\"}\n\r\n")


class _Peer(Protocol):
    """Says nothing (and stops reading), or answers `reply` to the first bytes and stalls."""

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        if self.factory.reply is None:
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.factory.reply and not self.factory.answered:
            self.factory.answered = True
            self.transport.write(self.factory.reply)


async def _against(reply: bytes | None,
                   call: Callable[[str], Awaitable[Any]]) -> tuple[Any, float]:
    """Run `call(base_url)` against a loopback peer; (its outcome, seconds it took)."""
    factory = Factory.forProtocol(_Peer)
    factory.connections, factory.reply, factory.answered = [], reply, False
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    started = reactor.seconds()
    try:
        outcome: Any = await Deferred.fromCoroutine(
            call("http://127.0.0.1:{}".format(port.getHost().port))
        ).addTimeout(TIMEOUT_SECONDS + 5, reactor)
    except Exception as exc:  # the test inspects it
        outcome = exc
    finally:
        took = reactor.seconds() - started
        for connection in factory.connections:
            connection.transport.abortConnection()
        await port.stopListening()
    return outcome, took


def _store(base_url: str) -> StoreClient:
    return StoreClient(make_http_client(reactor, persistent=False), base_url, CLUSTER_KEY,
                       TIMEOUT_SECONDS, reactor)


def _master(base_url: str) -> MasterClient:
    return MasterClient(make_http_client(reactor, persistent=False), base_url, CLUSTER_KEY,
                        TIMEOUT_SECONDS, reactor)


def _assert_gave_up(outcome: Any, took: float) -> None:
    assert isinstance(outcome, PeerUnavailable), repr(outcome)
    assert TIMEOUT_SECONDS <= took < TIMEOUT_SECONDS + 1.5


@pytest_twisted.ensureDeferred
async def test_put_to_a_store_that_stops_reading_gives_up(tmp_path) -> None:
    """A PUT streaming to a store that accepted and stopped reading (a frozen store) fails
    after the timeout instead of hanging."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as handle:
        handle.truncate(PUT_BYTES)
    sha1 = hashlib.sha1(b"\0" * PUT_BYTES).hexdigest()
    outcome, took = await _against(
        None, lambda url: _store(url).put(sha1, "bin", str(path), PUT_BYTES))
    _assert_gave_up(outcome, took)


@pytest.mark.parametrize("reply", [None, STALLED_JSON], ids=["silent", "headers-then-stall"])
@pytest_twisted.ensureDeferred
async def test_store_probe_gives_up(reply: bytes | None) -> None:
    """An exists probe to a store that says nothing, or stalls after the headers, fails
    after the timeout."""
    outcome, took = await _against(reply, lambda url: _store(url).exists(["a" * 40]))
    _assert_gave_up(outcome, took)


@pytest.mark.parametrize("reply", [None, STALLED_JSON], ids=["silent", "headers-then-stall"])
@pytest_twisted.ensureDeferred
async def test_master_call_gives_up(reply: bytes | None) -> None:
    """A JSON call to a master that says nothing, or stalls after the headers, fails after
    the timeout."""
    outcome, took = await _against(reply, lambda url: _master(url).list_peers())
    _assert_gave_up(outcome, took)


@pytest_twisted.ensureDeferred
async def test_master_stream_stalled_after_a_row_gives_up() -> None:
    """An NDJSON stream from the master that stalls after a row fails after the timeout."""
    rows: list[Any] = []
    outcome, took = await _against(
        STALLED_NDJSON, lambda url: _master(url).store_inventory("store1", rows.append))
    _assert_gave_up(outcome, took)
    assert rows == [{"hash": "a"}]
