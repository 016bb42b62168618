"""`PingNet`: the ping net of one prism or store process.

Every `interval` it probes each active peer of the registry copy in `Peers`:
a PING, and when no answer has come after half the `timeout`, a second PING
plus PING-REQs through up to `indirect` other peers (SWIM's indirect probe,
so one bad path or one lost packet does not count as a miss).  Any fresh,
authentic packet from the peer (or a relayed acknowledgement) answers the
round.  After `misses` unanswered rounds in a row this node votes the peer
down in the ballot box (Redis); hearing from it withdraws the vote at once.

Every `tally_interval` it reads all tallies in one round trip and decides on
its own: a peer is down when a strict majority of the eligible voters voted
against it.  Verdicts pass through flap dampening and land in `Peers`.

A timeout that fires long after its deadline means this process was not
running (SIGSTOP, swap, a long GC): such rounds are void, not misses.  A node
that suddenly cannot reach most of its peers suspects itself and withdraws
its votes until it hears from a majority again.  While the ballot box is
unreachable the node falls back to its own observations.

While the node's own HTTP service fails its self-check (`set_http_ok(False)`,
see selfcheck.py) the node is silent: it sends no packet at all (no PONG, no
PING, no relay) and withdraws its votes, so its peers vote it down exactly as
if it had died; it speaks again as soon as its HTTP side answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from stretchfs.config import PingSettings
from stretchfs.pingnet.ballot import BallotBox, read_tallies
from stretchfs.pingnet.metrics import PingMetrics
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
from stretchfs.pingnet.verdict import Dampener, Tally, count_all
from stretchfs.redisstore import RedisStore

log = Logger()
MAX_RELAYS = 4096
SLOW_READ_SECONDS = 1.0


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
class _PeerState:
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


class PingProtocol(DatagramProtocol):
    """Hands every datagram to the `PingNet` that owns the socket."""

    noisy = False

    def __init__(self, net: "PingNet") -> None:
        self._net = net

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """One UDP packet arrived."""
        self._net.datagram_received(datagram, addr)


class PingNet(Service):
    """UDP probes, votes in Redis and verdicts for this process's `Peers`."""

    def __init__(self, settings: PingSettings, *, self_name: str, host: str, cluster_key: str,
                 peers: Peers, redis: RedisStore, redis_prefix: str, reactor: Any,
                 metrics_registry: CollectorRegistry | None = None,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.self_name = self_name
        self.host = host
        self.peers = peers
        self._reactor = reactor
        self._redis = redis
        self._prefix = redis_prefix
        self._key = derive_key(cluster_key)
        self._self_id = node_id(self_name)
        self._rng = rng or random.Random()
        self.metrics = PingMetrics(metrics_registry or CollectorRegistry())
        self.protocol = PingProtocol(self)
        self._guard = ReplayGuard(settings.clock_window)
        self.ballot = BallotBox(redis, redis_prefix, self_name, settings.vote_ttl,
                                refresh_after=max(settings.interval, settings.vote_ttl / 4),
                                now=reactor.seconds)
        self.ballot.on_cast = self._vote_cast
        self.ballot.on_error = self._ballot_failed
        self.ballot.on_ok = lambda: self._set_fallback(False)
        self.dampener = Dampener(settings.flap_window, settings.flap_hold)
        self._states: dict[str, _PeerState] = {}
        self._names: dict[bytes, str] = {}
        self._targets: list[str] = []
        self._registry_version = -1
        self._by_seq: dict[int, _Probe] = {}
        self._sent_at: dict[int, float] = {}
        self._relays: dict[int, _Relay] = {}
        self._seq = 0
        self._port: Any = None
        self.bound_port = 0
        self._round_loop: LoopingCall | None = None
        self._tally_loop: LoopingCall | None = None
        self._reading: float | None = None
        self._last_round: float | None = None
        self.fallback = False
        self.self_suspect = False
        self.http_ok = True
        self.tallies: dict[str, Tally] = {}
        self.on_unknown_sender: Any = lambda: None

    # -- service -----------------------------------------------------------
    def startService(self) -> None:
        """Bind the UDP port and start probing and tallying."""
        super().startService()
        self._port = self._reactor.listenUDP(self.settings.port, self.protocol,
                                             interface=self.host)
        self.bound_port = self._port.getHost().port
        self._seq = int(self._reactor.seconds() * 1_000_000)
        log.info("ping net of {node} listening on udp {host}:{port}", node=self.self_name,
                 host=self.host, port=self.bound_port, event="pingnet_listening")
        self._round_loop = LoopingCall(self._round)
        self._round_loop.clock = self._reactor
        self._round_loop.start(self.settings.interval, now=True)
        self._tally_loop = LoopingCall(self._tally)
        self._tally_loop.clock = self._reactor
        self._tally_loop.start(self.settings.tally_interval, now=False)

    def stopService(self) -> Deferred[None]:
        """Stop the loops and timers, withdraw this node's votes, close the socket."""
        super().stopService()
        for loop in (self._round_loop, self._tally_loop):
            if loop is not None and loop.running:
                loop.stop()
        self._round_loop = self._tally_loop = None
        for probe in list(self._by_seq.values()):
            self._cancel(probe)
        self._by_seq.clear()
        self._sent_at.clear()
        self._relays.clear()
        for state in self._states.values():
            state.probe = None
            self._disarm(state)
        port, self._port = self._port, None
        if port is not None:
            port.stopListening()
        d = self.ballot.withdraw_all() or succeed(None)
        d.addErrback(lambda failure: None)
        return d

    def set_http_ok(self, ok: bool) -> None:
        """This node's HTTP service answers (True) or not: silent while it does not."""
        if ok == self.http_ok:
            return
        self.http_ok = ok
        self.metrics.http_failing.set(0 if ok else 1)
        log.info("ping net of {node} {state}", node=self.self_name,
                 state="answers again" if ok else "goes silent: its HTTP service does not answer",
                 event="pingnet_silent", silent=not ok)
        if not ok:
            for state in self._states.values():
                if state.probe is not None:
                    self._cancel(state.probe)
                    state.probe = None
                self._disarm(state)
        self._update_votes()

    # -- registry ------------------------------------------------------------
    def _refresh_registry(self) -> None:
        version = self.peers.registry_version
        if version == self._registry_version:
            return
        self._registry_version = version
        records = self.peers.all()
        names = {node_id(r.name): r.name for r in records}
        for gone in set(self._names) - set(names):
            self._guard.forget(gone)
        self._names = names
        self._targets = [r.name for r in records
                         if r.active and r.name != self.self_name and r.ping_port]
        for name in set(self._states) - set(self._targets):
            state = self._states.pop(name)
            if state.probe is not None:
                self._cancel(state.probe)
            self._disarm(state)
            self.dampener.forget(name)
        for name in self._targets:
            self._states.setdefault(name, _PeerState())
        self._update_votes()

    # -- probing -------------------------------------------------------------
    def _round(self) -> None:
        try:
            now = self._reactor.seconds()
            self._refresh_registry()
            self._prune(now)
            previous, self._last_round = self._last_round, now
            for name in self._targets:
                state = self._states[name]
                if state.probe is not None:
                    continue
                if self._covered(name, state, previous):
                    self._arm(name, state, now)
                else:
                    self._start_probe(name, now)
            self.ballot.sync()
        except Exception:
            log.failure("ping net probe round failed")

    def _covered(self, name: str, state: _PeerState, previous: float | None) -> bool:
        """True when the peer's own PINGs already show it alive this round.

        Of each pair, the peer with the smaller name probes the other; the other
        answers and skips its own probe while those PINGs keep arriving (half the
        packets).  It probes as usual as soon as they stop.
        """
        return (name < self.self_name and previous is not None
                and state.last_ping is not None and state.last_ping > previous
                and not state.failing and state.misses == 0)

    def _arm(self, name: str, state: _PeerState, now: float) -> None:
        """Probe the peer ourselves if its next PING is late."""
        self._disarm(state)
        assert state.last_ping is not None
        due = state.last_ping + self.settings.interval + self.settings.timeout / 2
        state.watchdog = self._reactor.callLater(max(due - now, 0.0), self._overdue, name,
                                                 state.last_ping)

    def _disarm(self, state: _PeerState) -> None:
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
                self._start_probe(name, self._reactor.seconds())
        except Exception:
            log.failure("ping net watchdog failed")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _start_probe(self, name: str, now: float) -> None:
        if not self.http_ok:
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
            self._reactor.callLater(self.settings.timeout / 2, self._escalate, probe),
            self._reactor.callLater(self.settings.timeout, self._finish, probe),
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
            helpers = [name for name in self._targets
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
        lateness = self._reactor.seconds() - probe.deadline
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
                self._update_votes()
        elif self.running:
            # A suspect peer is probed again at once instead of at the next interval,
            # so `misses` rounds take misses x timeout, not misses x interval.
            self._start_probe(probe.target, self._reactor.seconds())

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
            self._sent_at[seq] = self._reactor.seconds()
        self._send((record.host, record.ping_port), node_id(name), kind, seq, target, echo)

    def _send(self, addr: Any, receiver: bytes, kind: int, seq: int,
              target: bytes = NO_TARGET, echo: int = 0) -> None:
        """Sign and send one packet for node id `receiver` to UDP address `addr`."""
        if self._port is None or not self.http_ok:
            return
        packet = Packet(kind=kind, sender=self._self_id, receiver=receiver, target=target,
                        seq=seq, echo=echo, stamp=self._reactor.seconds())
        try:
            self.protocol.transport.write(encode(self._key, packet), addr)
        except OSError as exc:
            log.debug("ping net send to {addr} failed: {error}", addr=addr, error=str(exc))
            return
        self.metrics.sent_by_kind[kind].inc()

    # -- receiving -------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Authenticate and handle one packet; bad ones are dropped and counted."""
        now = self._reactor.seconds()
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
                self.on_unknown_sender()
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
        """Fresh evidence that `name` runs: the round is answered, any vote withdrawn."""
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
            self._update_votes()

    # -- votes -----------------------------------------------------------------
    def _update_votes(self) -> None:
        """Recompute self-suspicion and the votes this node wants in the ballot box."""
        base = [n for n in self._targets if not self.peers.is_down(n)]
        lost = [n for n in base if self._states[n].failing or self._states[n].misses]
        suspect = len(base) >= 2 and 2 * len(lost) > len(base)
        if suspect != self.self_suspect:
            self.self_suspect = suspect
            if suspect:
                log.warn("ping net: {node} cannot reach {lost} of {peers} peers; suspecting "
                         "itself and casting no votes", node=self.self_name, lost=len(lost),
                         peers=len(base), event="pingnet_self_suspect", suspect=True)
            else:
                log.info("ping net: {node} hears from a majority again; voting resumes",
                         node=self.self_name, event="pingnet_self_suspect", suspect=False)
        wanted = (set() if suspect or not self.http_ok
                  else {n for n in self._targets if self._states[n].failing})
        self.ballot.want(wanted)
        if self.fallback:
            self._apply_own(self._reactor.seconds())

    def _vote_cast(self, target: str) -> None:
        self.metrics.votes_cast.inc()
        log.info("ping net: {node} votes {peer} down", node=self.self_name, peer=target,
                 event="pingnet_vote")

    def _ballot_failed(self, failure: Any) -> None:
        self._set_fallback(True)

    # -- verdicts ----------------------------------------------------------------
    def _tally(self) -> None:
        try:
            now = self._reactor.seconds()
            if self._reading is not None:
                if now - self._reading > max(2 * self.settings.interval, SLOW_READ_SECONDS):
                    self._set_fallback(True)
                if self.fallback:
                    self._apply_own(now)
                return
            targets = [r.name for r in self.peers.all() if r.active and r.name != self.self_name]
            self._reading = now
            d = read_tallies(self._redis, self._prefix, targets, now)
            d.addCallbacks(self._tallied, self._tally_failed)
            d.addErrback(lambda failure: log.failure("ping net tally failed", failure))
            d.addBoth(self._read_done)
        except Exception:
            log.failure("ping net tally round failed")

    def _read_done(self, _: Any) -> None:
        self._reading = None

    def _tallied(self, result: tuple[dict[str, set[str]], dict[str, Any]]) -> None:
        votes, records = result
        self._set_fallback(False)
        now = self._reactor.seconds()
        active = [r.name for r in self.peers.all() if r.active]
        available = [name for name in active if self.peers.is_available(name)]
        self.tallies = count_all(active, available, self.self_name, votes)
        for target, tally in self.tallies.items():
            self._apply(target, tally.down, now, records.get(target))

    def _tally_failed(self, failure: Any) -> None:
        self._set_fallback(True)
        self._apply_own(self._reactor.seconds())

    def _apply_own(self, now: float) -> None:
        """Verdicts from this node's own observations (ballot box unreachable)."""
        for target in self._targets:
            self._apply(target, target in self.ballot.wanted, now, None)

    def _apply(self, target: str, raw_down: bool, now: float, record: Any) -> None:
        changed = self.dampener.update(target, raw_down, now)
        if changed is None:
            return
        verdict = self.dampener.states[target]
        self.peers.set_available(target, changed)
        self.metrics.verdict_changes.labels(available=str(changed).lower()).inc()
        self.metrics.peers_down.set(sum(1 for n in self._targets if self.peers.is_down(n)))
        tally = self.tallies.get(target)
        log.info("ping net verdict: {peer} {state} (votes {votes}/{needed}, hold {hold}s)",
                 peer=target, state="available" if changed else "unavailable",
                 available=changed, observer=self.self_name,
                 votes=len(tally.voters) if tally else None, needed=tally.needed if tally else None,
                 hold=verdict.hold, mode="fallback" if self.fallback else "ballot",
                 event="pingnet_verdict")
        if self.fallback:
            return
        if isinstance(record, dict) and record.get("available") == changed:
            return
        d = self.ballot.record_verdict(target, changed, now)
        d.addErrback(lambda failure: None)

    def _set_fallback(self, on: bool) -> None:
        if on == self.fallback:
            return
        self.fallback = on
        self.metrics.fallback.set(1 if on else 0)
        if on:
            log.warn("ping net: ballot box (Redis) unreachable; {node} decides from its own "
                     "observations", node=self.self_name, event="pingnet_ballot", reachable=False)
        else:
            log.info("ping net: ballot box (Redis) reachable again", node=self.self_name,
                     event="pingnet_ballot", reachable=True)

    # -- operators ---------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """This node's view, for `GET /pingnet/status`."""
        now = self._reactor.seconds()
        rows = []
        for record in self.peers.all():
            if record.name == self.self_name:
                continue
            state = self._states.get(record.name)
            verdict = self.dampener.states.get(record.name)
            tally = self.tallies.get(record.name)
            rows.append({
                "name": record.name, "role": record.role, "active": record.active,
                "writable": record.writable,
                "available": self.peers.is_available(record.name),
                "since": verdict.since if verdict else None,
                "hold": verdict.hold if verdict else 0.0,
                "changes": verdict.changes if verdict else 0,
                "voters": list(tally.voters) if tally else [],
                "needed": tally.needed if tally else None,
                "my_vote": record.name in self.ballot.wanted,
                "misses": state.misses if state else 0,
                "last_heard_ago": (round(now - state.last_heard, 3)
                                   if state and state.last_heard is not None else None),
                "rtt_ms": round(state.rtt * 1000, 3) if state and state.rtt is not None else None,
            })
        return {"node": self.self_name, "time": now,
                "mode": "fallback" if self.fallback else "ballot",
                "self_suspect": self.self_suspect, "http_ok": self.http_ok,
                "udp_port": self.bound_port,
                "interval": self.settings.interval, "peers": rows}
