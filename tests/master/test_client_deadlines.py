"""Node -> master calls give up after their timeout against a master that accepts the
connection and then says nothing, or stalls an answer after its headers."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from stretchfs.errors import PeerUnavailable
from stretchfs.pingnet.peers import Peers
from stretchfs.pingnet.registration import Registration
from stretchfs.wire.http import make_http_client
from stretchfs.wire.master import MasterClient
from tests.helpers import CLUSTER_KEY, SilentPeer, result_of

NDJSON_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _client() -> tuple[MasterClient, MemoryReactorClock]:
    clock = MemoryReactorClock()
    return MasterClient(make_http_client(clock), "http://127.0.0.1:1", CLUSTER_KEY, 5.0,
                        clock), clock


def _failure_of(d: Deferred) -> Any:
    failures: list = []
    d.addErrback(failures.append)
    assert failures, "the call has not failed"
    return failures[0]


def test_call_to_a_silent_master_gives_up_after_the_timeout() -> None:
    """A JSON call to a master that accepts and says nothing fails after `timeout`."""
    client, clock = _client()
    d = Deferred.fromCoroutine(client.list_peers())
    peer = SilentPeer(clock).accept()
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    assert _failure_of(d).check(PeerUnavailable)
    assert peer.dropped
    assert clock.getDelayedCalls() == []


def test_stream_stalled_after_some_rows_gives_up_after_the_timeout() -> None:
    """An NDJSON stream that stops sending fails `timeout` after its last chunk."""
    client, clock = _client()
    rows: list[Any] = []
    d = Deferred.fromCoroutine(client.store_inventory("store1", rows.append))
    peer = SilentPeer(clock).accept()
    peer.answer(NDJSON_HEAD + _chunk(b'{"hash": "a"}\n'))
    clock.advance(4.9)
    peer.answer(_chunk(b'{"hash": "b"}\n'))
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    assert _failure_of(d).check(PeerUnavailable)
    assert rows == [{"hash": "a"}, {"hash": "b"}]
    assert peer.dropped


def test_stream_that_keeps_sending_may_take_longer_than_the_timeout() -> None:
    """The deadline of a stream is idle: rows arriving within `timeout` of each other
    keep it going past `timeout` in total."""
    client, clock = _client()
    rows: list[Any] = []
    d = Deferred.fromCoroutine(client.store_inventory("store1", rows.append))
    peer = SilentPeer(clock).accept()
    peer.answer(NDJSON_HEAD)
    for n in range(4):
        clock.advance(4.0)
        peer.answer(_chunk(b'{"n": %d}\n' % n))
    peer.answer(b"0\r\n\r\n")
    assert result_of(d) == 4


def test_registration_retries_after_a_silent_master() -> None:
    """A master that accepts and never answers does not wedge registration: the attempt
    fails after the timeout and the next one is made."""
    client, clock = _client()
    service = Registration(client, Peers(self_name="store1"), clock=clock,
                           record=lambda: {"name": "store1", "role": "store", "port": 8000},
                           refresh_seconds=60.0)
    service.startService()
    clock.advance(0)
    SilentPeer(clock).accept()
    clock.advance(5.0)
    assert not service.registered
    clock.advance(1.0)  # the first retry's backoff
    assert len(clock.tcpClients) == 1, "no second attempt"
    service.stopService()
