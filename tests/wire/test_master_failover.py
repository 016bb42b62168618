"""MasterClient over several masters: which failures move a call to the next master."""

from __future__ import annotations

import json
from typing import Any

from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from stretchfs.errors import PeerUnavailable, UpstreamError
from stretchfs.wire.master import MASTER_DOWN_SECONDS, MasterClient
from tests.helpers import CLUSTER_KEY

TIMEOUT = 5.0
URLS = ["http://m1:8160", "http://m2:8160"]
REFUSED = "refused"
STALLED = "stalled"


class FakeMaster(Resource):
    """Answers every request with `code` and `body`, counting them."""

    isLeaf = True

    def __init__(self, code: int = 200, body: Any = None) -> None:
        super().__init__()
        self.code = code
        self.body = {"ok": True} if body is None else body
        self.seen: list[tuple[bytes, bytes]] = []

    def render(self, request: Request) -> bytes:
        self.seen.append((request.method, request.path))
        request.setResponseCode(self.code)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(self.body).encode()


@implementer(IAgent)
class Hosts:
    """An agent routing by host: to a FakeMaster, a refused connection, or silence."""

    def __init__(self, **hosts: FakeMaster | str) -> None:
        self.hosts = hosts
        self.attempts: list[str] = []

    def request(self, method: bytes, uri: bytes, headers: Any = None,
                bodyProducer: IBodyProducer | None = None) -> Deferred[IResponse]:
        host = uri.split(b"/")[2].split(b":")[0].decode()
        self.attempts.append(host)
        target = self.hosts[host]
        if target == REFUSED:
            return fail(ConnectionRefusedError())
        if target == STALLED:
            return Deferred()
        assert isinstance(target, FakeMaster)
        agent: IAgent = RequestTraversalAgent(target)
        return agent.request(method, uri, headers, bodyProducer)


def _client(hosts: Hosts, clock: Clock) -> MasterClient:
    # bodies are produced synchronously, as StubTreq does (no cooperator on the real reactor)
    http = HTTPClient(hosts, data_to_body_producer=_SynchronousProducer)
    return MasterClient(http, URLS, CLUSTER_KEY, TIMEOUT, clock)


def _run(d: Any) -> Deferred[Any]:
    return Deferred.fromCoroutine(d)


def _result(d: Deferred[Any]) -> Any:
    results: list = []
    d.addBoth(results.append)
    assert results, "the call has not finished"
    return results[0]


def test_an_idempotent_call_moves_on_from_a_refused_master_and_sticks() -> None:
    """A read that the first master refuses is answered by the second, which later calls use."""
    clock = Clock()
    second = FakeMaster(body={"peers": []})
    hosts = Hosts(m1=REFUSED, m2=second)
    client = _client(hosts, clock)
    with capturedLogs() as events:
        assert _result(_run(client.list_peers())) == []
    assert [(e["url"], e["next"]) for e in events if e.get("event") == "master_failover"] == [
        (URLS[0], URLS[1])]
    assert client.base_url == URLS[1]
    assert _result(_run(client.list_peers())) == []
    assert hosts.attempts == ["m1", "m2", "m2"]


def test_a_stalled_master_costs_one_deadline_then_the_next_answers() -> None:
    """A publish to a master that says nothing moves on after its deadline, not before."""
    clock = Clock()
    hosts = Hosts(m1=STALLED, m2=FakeMaster(body={"applied": 1}))
    d = _run(_client(hosts, clock).publish("store1", []))
    clock.advance(TIMEOUT - 0.1)
    assert not d.called and hosts.attempts == ["m1"]
    clock.advance(0.1)
    assert _result(d) == {"applied": 1}
    assert hosts.attempts == ["m1", "m2"]


def test_a_503_moves_on_but_a_4xx_is_the_answer() -> None:
    """A 503 from a master is retried on the next; a 404 or 401 is returned as it is."""
    clock = Clock()
    hosts = Hosts(m1=FakeMaster(503, {"error": "not ready"}), m2=FakeMaster(body={"users": []}))
    assert _result(_run(_client(hosts, clock).list_users())) == []
    refusing = Hosts(m1=FakeMaster(401, {"error": "no"}), m2=FakeMaster())
    failure = _result(_run(_client(refusing, clock).list_users()))
    assert failure.check(UpstreamError) and failure.value.code == 401
    assert refusing.attempts == ["m1"]


def test_a_purchase_create_moves_on_only_from_a_refused_connection() -> None:
    """Purchase creation goes to the next master when refused, but not after a stall (the
    first master may have created it)."""
    clock = Clock()
    refused = Hosts(m1=REFUSED, m2=FakeMaster(201, {"token": "t"}))
    assert _result(_run(_client(refused, clock).create_purchase({"hash": "h"}))) == {
        "token": "t"}
    stalled = Hosts(m1=STALLED, m2=FakeMaster(201, {"token": "t"}))
    d = _run(_client(stalled, clock).create_purchase({"hash": "h"}))
    clock.advance(TIMEOUT)
    assert _result(d).check(PeerUnavailable)
    assert stalled.attempts == ["m1"]


def test_when_every_master_fails_the_call_fails_once_each_was_tried() -> None:
    """Each master is tried once per call; the last failure is the call's."""
    clock = Clock()
    hosts = Hosts(m1=REFUSED, m2=REFUSED)
    assert _result(_run(_client(hosts, clock).list_peers())).check(PeerUnavailable)
    assert hosts.attempts == ["m1", "m2"]


def test_a_failed_master_is_tried_last_until_its_down_time_passed() -> None:
    """After m1 failed, a call that m2 refuses still tries m1 (last); after the down time
    a call starts with the master in use again."""
    clock = Clock()
    first = FakeMaster(body={"peers": []})
    hosts = Hosts(m1=REFUSED, m2=FakeMaster(body={"peers": []}))
    client = _client(hosts, clock)
    _result(_run(client.list_peers()))
    hosts.hosts.update(m1=first, m2=REFUSED)
    assert _result(_run(client.list_peers())) == []
    assert hosts.attempts == ["m1", "m2", "m2", "m1"]
    clock.advance(MASTER_DOWN_SECONDS)
    hosts.hosts.update(m2=FakeMaster(body={"peers": []}))
    _result(_run(client.list_peers()))
    assert hosts.attempts[-1] == "m1"


def test_a_refused_stream_is_read_from_the_next_master() -> None:
    """A snapshot refused by one master is read from the next."""
    clock = Clock()

    class Snapshot(FakeMaster):
        def render(self, request: Request) -> bytes:
            self.seen.append((request.method, request.path))
            return b'{"cursor": "1-0"}\n{"hash": "a"}\n'

    hosts = Hosts(m1=REFUSED, m2=Snapshot())
    rows: list = []
    assert _result(_run(_client(hosts, clock).inventory_snapshot(rows.append))) == "1-0"
    assert rows == [{"hash": "a"}]


def test_a_stream_cut_after_a_row_is_not_read_again_elsewhere() -> None:
    """A snapshot whose master dies after handing over a row fails rather than start over
    on the next master (the rows already handed over cannot be taken back)."""
    clock = Clock()

    class Cut(FakeMaster):
        def render(self, request: Request) -> Any:
            request.write(b'{"cursor": "1-0"}\n{"hash": "a"}\n')
            request.channel.transport.loseConnection()
            return NOT_DONE_YET

    hosts = Hosts(m1=Cut(), m2=FakeMaster())
    rows: list = []
    failure = _result(_run(_client(hosts, clock).inventory_snapshot(rows.append)))
    assert failure.check(PeerUnavailable)
    assert rows == [{"hash": "a"}] and hosts.attempts == ["m1"]
