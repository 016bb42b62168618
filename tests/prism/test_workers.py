"""Prism workers: the first process spawns and feeds the others, and nothing runs half alive."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from stretchfs.errors import NotReady
from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.prism.workers import (
    CONTROL_FD,
    PEER_PUSH_SECONDS,
    WORKER_SILENT_SECONDS,
    WORKER_STOP_SECONDS,
    RelayedStatus,
    WorkerLink,
    WorkerSupervisor,
    peer_state,
)

STORE1 = PeerRecord("store1", "store", "127.0.0.3", 8001, 9001, url="http://127.0.0.3:81")
STORE2 = PeerRecord("store2", "store", "127.0.0.4", 8002, 9002, zone="b", writable=False)


class FakeProcess:
    """The supervisor's view of one spawned worker."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.written: list[tuple[int, bytes]] = []
        self.signals: list[str] = []

    def writeToChild(self, fd: int, data: bytes) -> None:
        self.written.append((fd, data))

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class Harness:
    """A supervisor of `count` workers with a fake spawn and a Clock."""

    def __init__(self, count: int = 3, ports: Deferred[list[int]] | None = None,
                 spawn_error: Exception | None = None) -> None:
        self.spawn_error = spawn_error
        self.clock = Clock()
        self.peers = Peers(self_name="prism1")
        self.peers.set_registry([STORE1, STORE2])
        self.spawned: list[tuple[int, Any, list[int], FakeProcess]] = []
        self.stops = 0
        self.refreshes = 0
        self.status: dict[str, Any] = {"node": "prism1", "peers": []}
        self.supervisor = WorkerSupervisor(
            count=count, spawn=self.spawn, peers=self.peers, status=lambda: self.status,
            ports=lambda: ports if ports is not None else succeed([8080, 8443]),
            clock=self.clock, refresh_registry=self.refresh, stop_prism=self.stop)

    def spawn(self, worker: int, protocol: Any, ports: list[int]) -> FakeProcess:
        if self.spawn_error is not None:
            raise self.spawn_error
        process = FakeProcess(1000 + worker)
        self.spawned.append((worker, protocol, ports, process))
        return process

    def refresh(self) -> None:
        self.refreshes += 1

    def stop(self) -> None:
        self.stops += 1

    def exit(self, index: int, code: int = 0) -> None:
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(code)
        self.spawned[index][1].processEnded(Failure(reason))


def _lines(process: FakeProcess) -> list[dict[str, Any]]:
    assert all(fd == CONTROL_FD for fd, _ in process.written)
    return [json.loads(data) for _, data in process.written]


def test_workers_start_once_the_listeners_are_bound_on_their_ports() -> None:
    """Workers 2..N are spawned only when the ports are known, each told every port."""
    bound: Deferred[list[int]] = Deferred()
    harness = Harness(count=3, ports=bound)
    harness.supervisor.startService()
    assert harness.spawned == []
    bound.callback([8080, 8443])
    assert [(w, ports) for w, _, ports, _ in harness.spawned] == [(2, [8080, 8443]),
                                                                  (3, [8080, 8443])]


def test_the_peer_table_reaches_every_worker_at_once_and_then_periodically() -> None:
    """Each worker gets the registry, the down verdicts and the ping-net status at spawn
    and every PEER_PUSH_SECONDS, so a verdict reaches it within that time."""
    harness = Harness(count=2)
    harness.supervisor.startService()
    process = harness.spawned[0][3]
    first = _lines(process)
    assert len(first) == 1 and first[0]["down"] == [] and first[0]["status"] == harness.status
    assert [r["name"] for r in first[0]["records"]] == ["store1", "store2"]
    harness.peers.set_available("store2", False)
    harness.clock.advance(PEER_PUSH_SECONDS)
    assert _lines(process)[-1]["down"] == ["store2"]


def test_a_worker_applies_the_peer_table_like_the_first_process_sees_it() -> None:
    """The worker's Peers answers availability and candidates as the first's; the
    registry is replaced only when it changed."""
    source = Peers(self_name="prism1")
    source.set_registry([STORE1, STORE2])
    source.set_available("store1", False)
    peers, relayed = Peers(self_name="prism1"), RelayedStatus()
    link = WorkerLink(peers=peers, relayed=relayed, connect=lambda p: None, stop_worker=list)
    link.apply(peer_state(source, {"node": "prism1"}))
    assert peers.get("store1") == STORE1 and peers.get("store2") == STORE2
    assert not peers.is_available("store1") and peers.is_available("store2")
    assert relayed.status() == {"node": "prism1"}
    version = peers.registry_version
    source.set_available("store1", True)
    link.apply(peer_state(source, None))
    assert peers.is_available("store1") and peers.registry_version == version


def test_a_bad_peer_state_line_changes_nothing() -> None:
    """A line that is not a peer state is logged and ignored."""
    peers = Peers(self_name="prism1")
    peers.set_registry([STORE1])
    link = WorkerLink(peers=peers, relayed=RelayedStatus(), connect=lambda p: None,
                      stop_worker=list)
    with capturedLogs() as events:
        link.apply(b'{"records": [{"name": 1}]}')
        link.apply(b"not json")
    assert peers.all() == [STORE1] and peers.is_available("store1")
    assert len([e for e in events if e["log_level"].name == "warn"]) == 2


def test_the_relayed_status_is_not_ready_before_the_first_state() -> None:
    """A worker's /pingnet/status answers 503 until the first process's status arrives."""
    with pytest.raises(NotReady):
        RelayedStatus().status()


def test_a_worker_that_exits_takes_the_prism_down() -> None:
    """A worker exiting (any code) while the prism runs stops the whole prism, logged."""
    harness = Harness(count=3)
    harness.supervisor.startService()
    with capturedLogs() as events:
        harness.exit(1, code=1)
    assert harness.stops == 1
    assert [e["worker"] for e in events if e.get("event") == "worker_exited"] == [3]


def test_stopping_terms_every_worker_and_waits_for_them() -> None:
    """Stop sends TERM to each worker and fires once all exited, without stopping the
    prism again and leaving no timer behind."""
    harness = Harness(count=3)
    harness.supervisor.startService()
    done = harness.supervisor.stopService()
    assert [p.signals for *_, p in harness.spawned] == [["TERM"], ["TERM"]]
    fired: list[object] = []
    done.addCallback(fired.append)
    harness.exit(0)
    assert fired == []
    harness.exit(1)
    assert fired == [None] and harness.stops == 0
    assert harness.clock.getDelayedCalls() == []


def test_a_worker_that_ignores_term_is_killed() -> None:
    """A worker still running WORKER_STOP_SECONDS after TERM gets KILL."""
    harness = Harness(count=2)
    harness.supervisor.startService()
    harness.supervisor.stopService()
    harness.clock.advance(WORKER_STOP_SECONDS)
    assert harness.spawned[0][3].signals == ["TERM", "KILL"]
    harness.exit(0)
    assert harness.clock.getDelayedCalls() == []


def test_a_worker_asks_for_a_registry_refresh() -> None:
    """`refresh` on a worker's fd 3 (maybe split over reads) refreshes the registry."""
    harness = Harness(count=2)
    harness.supervisor.startService()
    protocol = harness.spawned[0][1]
    protocol.childDataReceived(3, b"refr")
    assert harness.refreshes == 0
    protocol.childDataReceived(3, b"esh\n")
    assert harness.refreshes == 1


class _Pipe:
    """The worker's end of the control pipe."""

    def __init__(self) -> None:
        self.protocol: Protocol | None = None
        self.sent = b""
        self.closed = False
        self.disconnecting = False

    def connect(self, protocol: Protocol) -> "_Pipe":
        self.protocol = protocol
        protocol.makeConnection(self)  # type: ignore[arg-type]  # enough of a transport
        return self

    def write(self, data: bytes) -> None:
        self.sent += data

    def loseConnection(self) -> None:
        self.closed = True
        assert self.protocol is not None
        self.protocol.connectionLost(Failure(Exception("closed")))


def test_a_worker_stops_when_its_supervisor_is_gone() -> None:
    """The control pipe closing under a running worker stops it; its own stop does not."""
    pipe, stops = _Pipe(), []
    link = WorkerLink(peers=Peers(), relayed=RelayedStatus(), connect=pipe.connect,
                      stop_worker=lambda: stops.append(1))
    link.startService()
    assert pipe.protocol is not None
    pipe.protocol.dataReceived(peer_state(Peers(), None) + b"\n")
    link.request_refresh()
    assert pipe.sent == b"alive\nrefresh\n"
    pipe.protocol.connectionLost(Failure(Exception("EOF")))
    assert stops == [1]
    other, stops2 = _Pipe(), []
    link2 = WorkerLink(peers=Peers(), relayed=RelayedStatus(), connect=other.connect,
                       stop_worker=lambda: stops2.append(1))
    link2.startService()
    link2.stopService()
    assert other.closed and stops2 == []


def test_a_hung_worker_takes_the_prism_down() -> None:
    """A worker that answers no peer table for WORKER_SILENT_SECONDS (its reactor hung,
    while the kernel still hands it connections) stops the prism, logged once; workers
    that answer keep it running, however long it runs."""
    harness = Harness(count=3)
    harness.supervisor.startService()
    answering, hung = harness.spawned[0][1], harness.spawned[1][1]
    for _ in range(int(3 * WORKER_SILENT_SECONDS / PEER_PUSH_SECONDS)):
        answering.childDataReceived(3, b"alive\n")
        hung.childDataReceived(3, b"alive\n")
        harness.clock.advance(PEER_PUSH_SECONDS)
    assert harness.stops == 0
    with capturedLogs() as events:
        for _ in range(int(WORKER_SILENT_SECONDS / PEER_PUSH_SECONDS) + 1):
            answering.childDataReceived(3, b"alive\n")
            harness.clock.advance(PEER_PUSH_SECONDS)
    assert harness.stops == 1
    assert [e["worker"] for e in events if e.get("event") == "worker_silent"] == [3]


def test_a_worker_answers_each_peer_table_even_a_bad_one() -> None:
    """The worker writes `alive` for every line it reads: the supervisor's sign of life."""
    pipe = _Pipe()
    link = WorkerLink(peers=Peers(), relayed=RelayedStatus(), connect=pipe.connect,
                      stop_worker=list)
    link.startService()
    assert pipe.protocol is not None
    pipe.protocol.dataReceived(peer_state(Peers(), None) + b"\n{not json\n")
    assert pipe.sent == b"alive\nalive\n"


def test_a_worker_that_cannot_be_started_takes_the_prism_down() -> None:
    """A spawn that fails (say the interpreter is gone) stops the prism, logged."""
    harness = Harness(count=3, spawn_error=OSError("no such file"))
    with capturedLogs() as events:
        harness.supervisor.startService()
    assert harness.stops == 1
    assert any(e.get("log_failure") is not None for e in events)
