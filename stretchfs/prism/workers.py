"""Prism workers: several processes serving one prism's ports (`[http] workers`).

The first process (worker 1, the one twistd starts) is the whole prism: ping
net, registration, its own mirrors and listeners bound with SO_REUSEPORT.
Once those are bound, its `WorkerSupervisor` spawns workers 2..N, each a
full prism process without ping net or registration, listening on the same
ports.  Every `PEER_PUSH_SECONDS` the supervisor writes its peer table and
ping-net status to each worker's stdin, one JSON line (`peer_state`); the
worker applies it with `WorkerLink` (so every worker picks stores by the one
ping net's verdicts) and asks for a registry refresh by writing `refresh` on
its fd 3, where it also answers each peer table with `alive`.  Nothing runs
half alive: a worker that exits, or that has not answered for
`WORKER_SILENT_SECONDS` (hung: the kernel would go on handing it
connections), takes the whole prism down (the supervisor stops, systemd
starts it again), and a worker whose supervisor is gone (its stdin closes)
stops itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport, IReactorTime
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from stretchfs.errors import NotReady
from stretchfs.pingnet.peers import PeerRecord, Peers

log = Logger()

PEER_PUSH_SECONDS = 0.25
WORKER_STOP_SECONDS = 10.0
WORKER_SILENT_SECONDS = 10.0
MAX_STATE_LINE_BYTES = 16 * 1024 * 1024
REFRESH_LINE = b"refresh"
ALIVE_LINE = b"alive"
CONTROL_FD = 0   # the worker's stdin: peer state from the supervisor
REQUEST_FD = 3   # the worker's requests to the supervisor

@dataclass(frozen=True)
class WorkerWiring:
    """How this process takes part in a prism of several workers (built by `tap.py`)."""

    worker: int
    """1 for the first process (it spawns the others), 2..N for the others."""
    stop: Callable[[], object]
    """Takes this process down (worker 1: exiting non-zero, see `tap.py`)."""
    spawn: "Spawn | None" = None
    """The first process's way to start worker N."""
    connect: Callable[[Protocol], Any] | None = None
    """A worker's way to attach a protocol to its control pipe."""
    ports: tuple[int, ...] = ()
    """A worker's ports to join, one per `[http] listen` endpoint."""


Spawn = Callable[[int, ProcessProtocol, list[int]], IProcessTransport]
"""`spawn(worker, protocol, ports)` starts worker number `worker` listening on `ports`."""


def peer_state(peers: Peers, status: dict[str, Any] | None) -> bytes:
    """One JSON line: the registry copy, the peers voted down and the ping-net status."""
    records = [asdict(record) for record in peers.all()]
    down = sorted(record["name"] for record in records if peers.is_down(record["name"]))
    return json.dumps({"records": records, "down": down, "status": status},
                      separators=(",", ":")).encode("utf-8")


class RelayedStatus:
    """A worker's stand-in for the ping net: the first worker's last `status()`."""

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = None

    def status(self) -> dict[str, Any]:
        """The relayed view, for `GET /pingnet/status`."""
        if self.last is None:
            raise NotReady("no ping-net status from the first worker yet")
        return self.last


class _WorkerProcess(ProcessProtocol):
    """The supervisor's end of one worker: its requests, its exit."""

    def __init__(self, supervisor: "WorkerSupervisor", worker: int, now: float) -> None:
        self._supervisor = supervisor
        self.worker = worker
        self.ended: Deferred[None] = Deferred()
        self.running = True
        self.heard = now          # when its last line came (its spawn, at first)
        self._buffer = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Lines on fd 3: `alive` answers a peer table, `refresh` asks for a registry
        download."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        self._buffer = self._buffer[-1024:]
        if lines:
            self.heard = self._supervisor.now()
        if any(line.strip() == REFRESH_LINE for line in lines):
            self._supervisor.refresh_registry()

    def processEnded(self, reason: Failure) -> None:
        """The worker exited."""
        self.running = False
        self._supervisor.worker_ended(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(Service):
    """In the first prism process: spawns workers 2..`count`, feeds them the peer
    table, stops them on stop, and stops the prism when one of them exits."""

    def __init__(self, *, count: int, spawn: Spawn, peers: Peers, status: Callable[[], Any],
                 ports: Callable[[], Deferred[list[int]]], clock: IReactorTime,
                 refresh_registry: Callable[[], object],
                 stop_prism: Callable[[], object]) -> None:
        """`ports()` fires with the bound port of each listener; `status()` is the ping
        net's status (or None); `stop_prism()` takes the whole prism down."""
        self._count = count
        self._spawn = spawn
        self._peers = peers
        self._status = status
        self._ports = ports
        self._clock = clock
        self.refresh_registry = refresh_registry
        self._stop_prism = stop_prism
        self._workers: dict[int, tuple[_WorkerProcess, IProcessTransport]] = {}
        self._push = LoopingCall(self.push)
        self._push.clock = clock
        self._stopping = False

    def startService(self) -> None:
        """Spawn the workers once every listener is bound."""
        super().startService()
        self._ports().addCallbacks(self._spawn_all, self._not_listening)

    def _not_listening(self, failure: Failure) -> None:
        log.critical("prism workers not started: a listener did not bind ({error})",
                     error=str(failure.value), event="workers_not_started")

    def _spawn_all(self, ports: list[int]) -> None:
        if self._stopping:
            return
        for worker in range(2, self._count + 1):
            protocol = _WorkerProcess(self, worker, self.now())
            try:
                transport = self._spawn(worker, protocol, ports)
            except Exception:
                log.failure("while starting prism worker {worker}; stopping the prism",
                            worker=worker)
                self._stop_prism()
                return
            self._workers[worker] = (protocol, transport)
            log.info("prism worker {worker} started (pid {pid}) on ports {ports}",
                     worker=worker, pid=transport.pid, ports=ports, event="worker_started")
        self._push.start(PEER_PUSH_SECONDS, now=True)

    def now(self) -> float:
        """The supervisor's clock."""
        return self._clock.seconds()

    def push(self) -> None:
        """Write the peer table and ping-net status to every running worker; stop the
        prism when one has not answered for `WORKER_SILENT_SECONDS`."""
        for protocol, _ in self._workers.values():
            silent = self.now() - protocol.heard
            if protocol.running and silent >= WORKER_SILENT_SECONDS:
                log.critical("prism worker {worker} has not answered for {seconds:.0f} s "
                             "(hung); stopping the prism", worker=protocol.worker,
                             seconds=silent, event="worker_silent")
                self._push.stop()
                self._stop_prism()
                return
        try:
            line = peer_state(self._peers, self._status()) + b"\n"
            for protocol, transport in self._workers.values():
                if protocol.running:
                    transport.writeToChild(CONTROL_FD, line)
        except Exception:
            log.failure("while passing the peer table to the prism workers")

    def worker_ended(self, protocol: _WorkerProcess, reason: Failure) -> None:
        """A worker exited: unless we are stopping, the prism stops (never half alive)."""
        if self._stopping:
            return
        code = reason.value.exitCode if isinstance(reason.value, (ProcessDone,
                                                                  ProcessTerminated)) else None
        signal = getattr(reason.value, "signal", None)
        log.critical("prism worker {worker} exited (code {code}, signal {signal}); "
                     "stopping the prism", worker=protocol.worker, code=code, signal=signal,
                     event="worker_exited")
        self._stop_prism()

    def stopService(self) -> Deferred[None]:
        """TERM every worker and fire once all have exited (KILL after WORKER_STOP_SECONDS)."""
        super().stopService()
        self._stopping = True
        if self._push.running:
            self._push.stop()
        running = [(p, t) for p, t in self._workers.values() if p.running]
        if not running:
            return succeed(None)
        for _protocol, transport in running:
            transport.signalProcess("TERM")
        kill = self._clock.callLater(WORKER_STOP_SECONDS, self._kill, running)
        done: Deferred[Any] = gatherResults([p.ended for p, _ in running])

        def finished(_: object) -> None:
            if kill.active():
                kill.cancel()

        done.addCallback(finished)
        return done

    def _kill(self, running: Sequence[tuple[_WorkerProcess, IProcessTransport]]) -> None:
        for protocol, transport in running:
            if protocol.running:
                log.warn("prism worker {worker} did not stop in {seconds} s: killed",
                         worker=protocol.worker, seconds=WORKER_STOP_SECONDS)
                transport.signalProcess("KILL")


class _LinkProtocol(LineOnlyReceiver):
    """A worker's end of the control pipe."""

    MAX_LENGTH = MAX_STATE_LINE_BYTES
    delimiter = b"\n"

    def __init__(self, link: "WorkerLink") -> None:
        self._link = link

    def lineReceived(self, line: bytes) -> None:
        """One peer state from the supervisor."""
        self._link.apply(line)

    def connectionLost(self, reason: Failure = Failure(Exception("lost"))) -> None:
        """The supervisor is gone (its end of the pipe closed)."""
        self._link.supervisor_gone()


class WorkerLink(Service):
    """In workers 2..N: applies the supervisor's peer table to `peers` and the
    ping-net status to `relayed`; stops the worker when the supervisor is gone."""

    def __init__(self, *, peers: Peers, relayed: RelayedStatus,
                 connect: Callable[[Protocol], Any], stop_worker: Callable[[], object]) -> None:
        """`connect(protocol)` attaches `protocol` to the control pipe (stdin for
        reading, fd 3 for writing) and returns its transport."""
        self._peers = peers
        self._relayed = relayed
        self._connect = connect
        self._stop_worker = stop_worker
        self._transport: Any = None
        self._records: list[PeerRecord] | None = None

    def startService(self) -> None:
        """Attach to the control pipe."""
        super().startService()
        self._transport = self._connect(_LinkProtocol(self))

    def apply(self, line: bytes) -> None:
        """Answer `alive`, then take one peer state: a new registry only when it changed,
        every verdict."""
        self._tell(ALIVE_LINE)
        try:
            state = json.loads(line)
            records = [PeerRecord(**record) for record in state["records"]]
            down = set(state["down"])
        except (ValueError, TypeError, KeyError) as exc:
            log.warn("bad peer state from the first prism worker: {error}", error=str(exc))
            return
        if records != self._records:
            self._peers.set_registry(records)
            self._records = records
        for record in records:
            self._peers.set_available(record.name, record.name not in down)
        self._relayed.last = state.get("status")

    def request_refresh(self) -> None:
        """Ask the supervisor for a registry download (an upload found too few stores)."""
        self._tell(REFRESH_LINE)

    def _tell(self, line: bytes) -> None:
        if self._transport is not None:
            self._transport.write(line + b"\n")

    def supervisor_gone(self) -> None:
        """Our stdin closed: unless stopping anyway, stop this worker."""
        if self.running:
            log.critical("the first prism process is gone: stopping this worker",
                         event="supervisor_gone")
            self._stop_worker()

    def stopService(self) -> None:
        """Stop reading the control pipe."""
        super().stopService()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.loseConnection()
