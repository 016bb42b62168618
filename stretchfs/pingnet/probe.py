"""`Prober`: the probe state machine of one node (who to probe, packets, timeouts).

Every round (`round`, each `interval`) it probes each of its current
targets (observers.py: K peers of its site, rotating; every peer of a site of
at most K + 1): a PING, and when no answer has come after half the
`timeout`, a second PING plus PING-REQs through up to `indirect` other peers
(SWIM's indirect probe, so one bad path or one lost packet does not count as
a miss).  Any fresh, authentic packet from the peer (or a relayed
acknowledgement) answers the round.  After `misses` unanswered rounds in a
row the peer is failing; hearing from it ends that at once.  Every change
is reported to the judge (`observe`).

Of each pair of peers that observe each other the one with the smaller name
probes the other; the other answers and skips its own probe while those
PINGs keep arriving.

A timeout that fires long after its deadline means this process was not
running (SIGSTOP, swap, a long GC): such rounds are void, not misses.  While
silent (`set_silent(True)`: its HTTP side fails) the node sends no packet at
all (no PONG, no PING, no relay).  Packets are signed for their receiver and
checked on arrival (packet.py): bad ones are dropped and counted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from stretchfs.config import PingSettings
from stretchfs.pingnet.metrics import PingMetrics
from stretchfs.pingnet.observers import Rotation
from stretchfs.pingnet.packet import (
    NO_TARGET,
    PING,
    PING_REQ,
    PONG,
    RELAY_ACK,
    BadPacket,
    Packet,
    ReplayGuard,
    decode,
    derive_key,
    encode,
    node_id,
)
from stretchfs.pingnet.peers import Peers

log = Logger()
MAX_RELAYS = 4096


@dataclass
class _Probe:
    """One probe round on one peer."""

    target: str
    id: int
    started: float
    deadline: float
    answered: bool = False
    seqs: list[int] = field(default_factory=list)
    calls: list[Any] = field(default_factory=list)


@dataclass
class PeerState:
    """What this node knows first-hand about one peer."""

    misses: int = 0
    failing: bool = False
    last_heard: float | None = None
    rtt: float | None = None
    probe: _Probe | None = None
    last_ping: float | None = None   # when the peer's own PING last reached us
    watchdog: Any = None


@dataclass
class _Relay:
    """A PING sent on another node's behalf (PING-REQ)."""

    requester: Any
    requester_id: bytes
    probe_id: int
    target: bytes
    expires: float


class Prober(DatagramProtocol):
    """The protocol of the node's UDP port: probes the peers, answers theirs, and
    tells the judge (`observe`) whom it lost."""

    noisy = False

    def __init__(self, settings: PingSettings, *, self_name: str, cluster_key: str,
                 peers: Peers, clock: Any, metrics: PingMetrics, rng: random.Random,
                 rotation: Rotation,
                 observe: Callable[[list[str], set[str], set[str], bool], None],
                 on_unknown_sender: Callable[[], None]) -> None:
        """`on_unknown_sender()` runs when a cluster member missing from `peers`
        writes to us."""
        self.settings = settings
        self.self_name = self_name
        self.peers = peers
        self._clock = clock
        self.metrics = metrics
        self._rng = rng
        self._rotation = rotation
        self._observe = observe
        self._on_unknown_sender = on_unknown_sender
        self._key = derive_key(cluster_key)
        self._self_id = node_id(self_name)
        self._guard = ReplayGuard(settings.clock_window)
        self._states: dict[str, PeerState] = {}
        self._names: dict[bytes, str] = {}
        self.targets: list[str] = []
        self._registry_version = -1
        self._by_seq: dict[int, _Probe] = {}
        self._sent_at: dict[int, float] = {}
        self._relays: dict[int, _Relay] = {}
        self._seq = 0
        self._last_round: float | None = None
        self.running = False
        self.silent = False

    def start(self) -> None:
        """Start sending (the port is bound); sequence numbers start at the boot time
        in µs, so a restart never reuses one."""
        self.running = True
        self._seq = int(self._clock.seconds() * 1_000_000)

    def stop(self) -> None:
        """Cancel every probe and timer."""
        self.running = False
        for state in self._states.values():
            self._quiet(state)
        self._relays.clear()

    def set_silent(self, silent: bool) -> None:
        """Send nothing at all (True) or speak again; a silent node wants no votes."""
        if silent == self.silent:
            return
        self.silent = silent
        if silent:
            for state in self._states.values():
                self._quiet(state)
        self._report()

    def state_of(self, name: str) -> PeerState | None:
        """What this node knows first-hand about `name` (None: not probed)."""
        return self._states.get(name)

    def pending(self) -> tuple[int, int, int]:
        """Sizes of the probe tables: (PINGs awaiting a PONG, probe seqs, relays)."""
        return len(self._sent_at), len(self._by_seq), len(self._relays)

    def _report(self) -> None:
        """Tell the judge: targets, failing, missing the last round, silent."""
        self._observe(list(self.targets), {n for n in self.targets if self._states[n].failing},
                      {n for n in self.targets if self._states[n].misses}, self.silent)

    # -- registry ------------------------------------------------------------
    def _refresh_targets(self, now: float) -> None:
        version = self.peers.registry_version
        if version != self._registry_version:
            self._registry_version = version
            names = {node_id(r.name): r.name for r in self.peers.all()}
            for gone in set(self._names) - set(names):
                self._guard.forget(gone)
            self._names = names
        targets = self._rotation.targets(self.peers.members(), self.self_name, now)
        if targets == self.targets:
            return
        self.targets = targets
        for name in set(self._states) - set(self.targets):
            self._quiet(self._states.pop(name))
        for name in self.targets:
            self._states.setdefault(name, PeerState())
        self._report()

    # -- probing -------------------------------------------------------------
    def round(self) -> None:
        """One probe round: every target not already covered by its own PINGs."""
        now = self._clock.seconds()
        self._refresh_targets(now)
        self._prune(now)
        previous, self._last_round = self._last_round, now
        for name in self.targets:
            state = self._states[name]
            if state.probe is not None:
                continue
            if self._covered(name, state, previous):
                self._arm(name, state, now)
            else:
                self._start_probe(name, now)

    def _covered(self, name: str, state: PeerState, previous: float | None) -> bool:
        """True when the peer's own PINGs already show it alive this round.

        Of each pair, the peer with the smaller name probes the other; the other
        answers and skips its own probe while those PINGs keep arriving (half the
        packets).  It probes as usual as soon as they stop.
        """
        return (name < self.self_name and previous is not None
                and state.last_ping is not None and state.last_ping > previous
                and not state.failing and state.misses == 0)

    def _arm(self, name: str, state: PeerState, now: float) -> None:
        """Probe the peer ourselves if its next PING is late."""
        self._disarm(state)
        assert state.last_ping is not None
        due = state.last_ping + self.settings.interval + self.settings.timeout / 2
        state.watchdog = self._clock.callLater(max(due - now, 0.0), self._overdue, name,
                                               state.last_ping)

    def _quiet(self, state: PeerState) -> None:
        """Cancel the peer's probe round and watchdog."""
        if state.probe is not None:
            self._cancel(state.probe)
            state.probe = None
        self._disarm(state)

    def _disarm(self, state: PeerState) -> None:
        if state.watchdog is not None and state.watchdog.active():
            state.watchdog.cancel()
        state.watchdog = None

    def _overdue(self, name: str, seen: float) -> None:
        try:
            state = self._states.get(name)
            if state is None or not self.running:
                return
            state.watchdog = None
            if state.probe is None and state.last_ping == seen:
                self._start_probe(name, self._clock.seconds())
        except Exception:
            log.failure("ping net watchdog failed")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _start_probe(self, name: str, now: float) -> None:
        if self.silent:
            return
        state = self._states[name]
        if state.probe is not None:
            self._finish(state.probe)
        probe = _Probe(target=name, id=self._next_seq(), started=now,
                       deadline=now + self.settings.timeout)
        state.probe = probe
        self._by_seq[probe.id] = probe
        probe.seqs.append(probe.id)
        self._send_to_peer(name, PING, probe.id)
        self.metrics.probes_sent.inc()
        probe.calls = [
            self._clock.callLater(self.settings.timeout / 2, self._escalate, probe),
            self._clock.callLater(self.settings.timeout, self._finish, probe),
        ]

    def _escalate(self, probe: _Probe) -> None:
        """Half the timeout passed without an answer: retry directly and through helpers."""
        try:
            if probe.answered:
                return
            seq = self._next_seq()
            probe.seqs.append(seq)
            self._by_seq[seq] = probe
            self._send_to_peer(probe.target, PING, seq)
            helpers = [name for name in self.targets
                       if name != probe.target and not self._states[name].failing
                       and self.peers.is_available(name)]
            count = min(self.settings.indirect, len(helpers))
            for helper in self._rng.sample(helpers, count):
                self._send_to_peer(helper, PING_REQ, self._next_seq(),
                                   target=node_id(probe.target), echo=probe.id)
        except Exception:
            log.failure("ping net escalation failed")

    def _finish(self, probe: _Probe) -> None:
        """The round's deadline: count a miss unless answered (or we were not running)."""
        self._cancel(probe)
        state = self._states.get(probe.target)
        if state is None or state.probe is not probe:
            return
        state.probe = None
        if probe.answered:
            return
        lateness = self._clock.seconds() - probe.deadline
        if lateness > self.settings.timeout:
            log.debug("ping net round on {peer} void: this node stalled {late:.3f}s",
                      peer=probe.target, late=lateness)
            return
        state.misses += 1
        self.metrics.probes_lost.inc()
        if state.misses >= self.settings.misses:
            if not state.failing:
                state.failing = True
                log.info("ping net: {peer} missed {misses} probe rounds", peer=probe.target,
                         misses=state.misses, event="pingnet_unreachable")
                self._report()
        elif self.running:
            # A suspect peer is probed again at once instead of at the next interval,
            # so `misses` rounds take misses x timeout, not misses x interval.
            self._start_probe(probe.target, self._clock.seconds())

    def _cancel(self, probe: _Probe) -> None:
        for call in probe.calls:
            if call.active():
                call.cancel()
        probe.calls = []
        for seq in probe.seqs:
            self._by_seq.pop(seq, None)
            self._sent_at.pop(seq, None)

    def _prune(self, now: float) -> None:
        for seq in [s for s, relay in self._relays.items() if relay.expires <= now]:
            del self._relays[seq]

    # -- sending -------------------------------------------------------------
    def _send_to_peer(self, name: str, kind: int, seq: int, target: bytes = NO_TARGET,
                      echo: int = 0) -> None:
        record = self.peers.get(name)
        if record is None or not record.ping_port:
            return
        if kind == PING:  # probe PINGs only: their seqs are released with the probe
            self._sent_at[seq] = self._clock.seconds()
        self._send((record.host, record.ping_port), node_id(name), kind, seq, target, echo)

    def _send(self, addr: Any, receiver: bytes, kind: int, seq: int,
              target: bytes = NO_TARGET, echo: int = 0) -> None:
        """Sign and send one packet for node id `receiver` to UDP address `addr`."""
        if not self.running or self.silent or self.transport is None:
            return
        packet = Packet(kind=kind, sender=self._self_id, receiver=receiver, target=target,
                        seq=seq, echo=echo, stamp=self._clock.seconds())
        try:
            self.transport.write(encode(self._key, packet), addr)
        except OSError as exc:
            log.debug("ping net send to {addr} failed: {error}", addr=addr, error=str(exc))
            return
        self.metrics.sent_by_kind[kind].inc()

    # -- receiving -------------------------------------------------------------
    def datagramReceived(self, data: bytes, addr: Any) -> None:
        """Authenticate and handle one packet; bad ones are dropped and counted."""
        now = self._clock.seconds()
        try:
            packet = decode(self._key, data, self._self_id)
            name = self._names.get(packet.sender)
            if packet.sender == self._self_id:
                raise BadPacket("self")
            self._guard.check(packet, now)
            if name is None:
                # A cluster member (the HMAC says so) that registered after our last
                # registry download: answer its PING so it does not count us as missing,
                # and fetch the registry to learn its name.
                self._on_unknown_sender()
                if packet.kind == PING:
                    self._send(addr, packet.sender, PONG, self._next_seq(), echo=packet.seq)
                    return
                raise BadPacket("unknown_sender")
        except BadPacket as exc:
            self.metrics.dropped.labels(reason=exc.reason).inc()
            log.debug("ping net dropped a packet from {addr}: {reason}", addr=addr,
                      reason=exc.reason)
            return
        except Exception:
            self.metrics.dropped.labels(reason="error").inc()
            log.failure("ping net could not parse a packet")
            return
        try:
            self.metrics.received_by_kind[packet.kind].inc()
            self._handle(name, packet, addr, now)
        except Exception:
            log.failure("ping net failed to handle a packet")

    def _handle(self, name: str, packet: Packet, addr: Any, now: float) -> None:
        if packet.kind == PONG:
            sent = self._sent_at.pop(packet.echo, None)
            probe = self._by_seq.get(packet.echo)
            if sent is not None and probe is not None and probe.target == name:
                rtt = now - sent
                self.metrics.rtt.observe(rtt)
                self._states[name].rtt = rtt
        if name in self._states:
            if packet.kind == PING:
                self._states[name].last_ping = now
            self._heard(name, now)
        if packet.kind == PING:
            self._send(addr, packet.sender, PONG, self._next_seq(), echo=packet.seq)
        elif packet.kind == PONG:
            relay = self._relays.pop(packet.echo, None)
            if relay is not None and relay.target == packet.sender:
                self._send(relay.requester, relay.requester_id, RELAY_ACK, self._next_seq(),
                           target=relay.target, echo=relay.probe_id)
        elif packet.kind == PING_REQ:
            target = self._names.get(packet.target)
            if target is None or target == self.self_name or len(self._relays) >= MAX_RELAYS:
                return
            record = self.peers.get(target)
            if record is None or not record.ping_port:
                return
            seq = self._next_seq()
            self._relays[seq] = _Relay(requester=addr, requester_id=packet.sender,
                                       probe_id=packet.echo, target=packet.target,
                                       expires=now + self.settings.timeout)
            self._send((record.host, record.ping_port), packet.target, PING, seq)
        elif packet.kind == RELAY_ACK:
            target = self._names.get(packet.target)
            probe = self._by_seq.get(packet.echo)
            if target is not None and probe is not None and probe.target == target:
                self._heard(target, now)

    def _heard(self, name: str, now: float) -> None:
        """Fresh evidence that `name` runs: the round is answered, failing ends."""
        state = self._states.get(name)
        if state is None:
            return
        state.last_heard = now
        state.misses = 0
        probe = state.probe
        if probe is not None:
            probe.answered = True
            self._cancel(probe)
            state.probe = None
        if state.failing:
            state.failing = False
            log.info("ping net: heard from {peer} again", peer=name, event="pingnet_reachable")
            self._report()
