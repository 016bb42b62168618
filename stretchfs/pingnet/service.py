"""`PingNet`: the ping net of one prism or store process, as a Twisted service.

The shell around the two parts that do the work: it binds the UDP port,
runs the `Prober` (probe.py: who to probe, packets, timeouts) every
`interval` and the `Judge` (judge.py: self-suspicion, votes, tallies,
dampening, verdicts) every `tally_interval`, and answers `status()` for
`GET /pingnet/status`.

While the node's own HTTP service fails its self-check (`set_http_ok(False)`,
see selfcheck.py) the node is silent: it sends no packet at all and
withdraws its votes, so its peers vote it down exactly as if it had died; it
speaks again as soon as its HTTP side answers.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from stretchfs.config import PingSettings
from stretchfs.pingnet.judge import Judge
from stretchfs.pingnet.metrics import PingMetrics
from stretchfs.pingnet.observers import Rotation
from stretchfs.pingnet.peers import Peers
from stretchfs.pingnet.probe import Prober
from stretchfs.redisstore import RedisStore

log = Logger()


class PingNet(Service):
    """UDP probes, votes in Redis and verdicts for this process's `Peers`."""

    def __init__(self, settings: PingSettings, *, self_name: str, host: str, cluster_key: str,
                 peers: Peers, redis: RedisStore, redis_prefix: str, reactor: Any,
                 metrics_registry: CollectorRegistry, rng: random.Random,
                 on_unknown_sender: Callable[[], None]) -> None:
        """`on_unknown_sender()` runs when a cluster member missing from `peers` pings
        us (a registry download is due)."""
        self.settings = settings
        self.self_name = self_name
        self.host = host
        self.peers = peers
        self._reactor = reactor
        self.metrics = PingMetrics(metrics_registry)
        rotation = Rotation(settings.observers, settings.rotate, settings.clock_window)
        self.judge = Judge(settings, self_name=self_name, peers=peers, redis=redis,
                           redis_prefix=redis_prefix, clock=reactor, metrics=self.metrics,
                           rotation=rotation)
        self.prober = Prober(settings, self_name=self_name, cluster_key=cluster_key,
                             peers=peers, clock=reactor, metrics=self.metrics, rng=rng,
                             rotation=rotation,
                             observe=self.judge.observe, on_unknown_sender=on_unknown_sender)
        self._port: Any = None
        self.bound_port = 0
        self._round_loop: LoopingCall | None = None
        self._tally_loop: LoopingCall | None = None

    def startService(self) -> None:
        """Bind the UDP port and start probing and tallying."""
        super().startService()
        self._port = self._reactor.listenUDP(self.settings.port, self.prober,
                                             interface=self.host)
        self.bound_port = self._port.getHost().port
        self.prober.start()
        log.info("ping net of {node} listening on udp {host}:{port}", node=self.self_name,
                 host=self.host, port=self.bound_port, event="pingnet_listening")
        self._round_loop = LoopingCall(self._round)
        self._round_loop.clock = self._reactor
        self._round_loop.start(self.settings.interval, now=True)
        self._tally_loop = LoopingCall(self.judge.tally)
        self._tally_loop.clock = self._reactor
        self._tally_loop.start(self.settings.tally_interval, now=False)

    def stopService(self) -> Deferred[None]:
        """Stop the loops and timers, withdraw this node's votes, close the socket."""
        super().stopService()
        for loop in (self._round_loop, self._tally_loop):
            if loop is not None and loop.running:
                loop.stop()
        self._round_loop = self._tally_loop = None
        self.prober.stop()
        port, self._port = self._port, None
        if port is not None:
            port.stopListening()
        d = self.judge.ballot.withdraw_all() or succeed(None)
        d.addErrback(lambda failure: None)
        return d

    def _round(self) -> None:
        try:
            self.prober.round()
            self.judge.ballot.sync()
        except Exception:
            log.failure("ping net probe round failed")

    @property
    def http_ok(self) -> bool:
        """False while this node is silent because its HTTP service does not answer."""
        return not self.prober.silent

    def set_http_ok(self, ok: bool) -> None:
        """This node's HTTP service answers (True) or not: silent while it does not."""
        if ok == self.http_ok:
            return
        self.metrics.http_failing.set(0 if ok else 1)
        log.info("ping net of {node} {state}", node=self.self_name,
                 state="answers again" if ok else "goes silent: its HTTP service does not answer",
                 event="pingnet_silent", silent=not ok)
        self.prober.set_silent(not ok)

    def status(self) -> dict[str, Any]:
        """This node's view, for `GET /pingnet/status`."""
        now = self._reactor.seconds()
        rows = []
        for record in self.peers.all():
            if record.name == self.self_name:
                continue
            state = self.prober.state_of(record.name)
            rows.append({
                "name": record.name, "role": record.role, "port": record.port,
                "active": record.active,
                "writable": record.writable,
                **self.judge.view_of(record.name),
                "misses": state.misses if state else 0,
                "last_heard_ago": (round(now - state.last_heard, 3)
                                   if state and state.last_heard is not None else None),
                "rtt_ms": round(state.rtt * 1000, 3) if state and state.rtt is not None else None,
            })
        return {"node": self.self_name, "time": now,
                "mode": "fallback" if self.judge.fallback else "ballot",
                "self_suspect": self.judge.self_suspect, "http_ok": self.http_ok,
                "udp_port": self.bound_port,
                "interval": self.settings.interval, "peers": rows}
