"""`Judge`: from this node's observations to votes, and from the tallies to verdicts.

The prober reports what it sees (`observe`): the peers it probes, those
failing (`misses` rounds unanswered) and those that missed the last round.  A node that
suddenly cannot reach most of its peers suspects itself and withdraws its
votes until it hears from a majority again; a silent node (its HTTP side
fails) votes for nobody.  Otherwise it votes against every lost peer in the
ballot box (ballot.py).

Every vote write recounts its target in Redis (ballot.py): the peers a
majority of their current observers holds down form one shared down hash
with a version.  Every `tally_interval` the shell calls `tally`: one GET of
the version, and the hash only when it moved.  Verdicts pass through flap
dampening and land in `Peers`.  While the ballot box is unreachable (or a
read hangs) the judge falls back to this node's own observations.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stretchfs.config import PingSettings
from stretchfs.pingnet.ballot import BallotBox, read_down, read_version
from stretchfs.pingnet.metrics import PingMetrics
from stretchfs.pingnet.observers import Rotation
from stretchfs.pingnet.peers import Peers
from stretchfs.pingnet.verdict import Dampener
from stretchfs.redisstore import RedisStore

log = Logger()
SLOW_READ_SECONDS = 1.0
FULL_READ_SECONDS = 10.0  # re-read the down hash at least this often (a restarted Redis
                          # counts its version from 0 again and could meet ours)


class Judge:
    """Self-suspicion, votes, tallies, flap dampening and verdicts of one node."""

    def __init__(self, settings: PingSettings, *, self_name: str, peers: Peers,
                 redis: RedisStore, redis_prefix: str, clock: Any,
                 metrics: PingMetrics, rotation: Rotation) -> None:
        self.settings = settings
        self.self_name = self_name
        self.peers = peers
        self._clock = clock
        self._redis = redis
        self._prefix = redis_prefix
        self.metrics = metrics
        self.ballot = BallotBox(redis, redis_prefix, self_name, settings.vote_ttl,
                                refresh_after=max(settings.interval, settings.vote_ttl / 4),
                                now=clock.seconds, on_cast=self._vote_cast,
                                electorates=lambda target: rotation.electorates(
                                    peers.members(), target, clock.seconds()),
                                on_error=lambda failure: self._set_fallback(True),
                                on_ok=lambda: self._set_fallback(False))
        self.dampener = Dampener(settings.flap_window, settings.flap_hold)
        self._targets: list[str] = []
        self._reading: float | None = None
        self.fallback = False
        self.self_suspect = False
        self.down: dict[str, Any] = {}   # the shared down hash: target -> record
        self._version: int | None = None  # of `down`; None: read the hash next tick
        self._full_read = float("-inf")   # when the down hash was last read

    # -- votes -----------------------------------------------------------------
    def observe(self, targets: list[str], failing: set[str], missing: set[str],
                silent: bool) -> None:
        """The prober's view changed: the peers it probes, those failing, those that
        missed the last round, whether this node is silent.  Recompute self-suspicion
        and the votes this node wants in the ballot box."""
        self._targets = targets
        base = [n for n in targets if not self.peers.is_down(n)]
        lost = [n for n in base if n in failing or n in missing]
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
        self.ballot.want(set() if suspect or silent else failing)
        self._watch()
        if self.fallback:
            self._apply_own(self._clock.seconds())

    def _vote_cast(self, target: str) -> None:
        self.metrics.votes_cast.inc()
        log.info("ping net: {node} votes {peer} down", node=self.self_name, peer=target,
                 event="pingnet_vote")

    # -- verdicts ----------------------------------------------------------------
    def tally(self) -> None:
        """Read the down hash's version (and the hash when it moved) and apply the
        verdicts; own observations while the ballot box fails or a read hangs."""
        try:
            now = self._clock.seconds()
            if self._reading is not None:
                if now - self._reading > max(2 * self.settings.interval, SLOW_READ_SECONDS):
                    self._set_fallback(True)
                if self.fallback:
                    self._apply_own(now)
                return
            self._reading = now
            d = read_version(self._redis, self._prefix)
            d.addCallback(self._version_read)
            d.addErrback(self._tally_failed)
            d.addErrback(lambda failure: log.failure("ping net tally failed", failure))
            d.addBoth(self._read_done)
        except Exception:
            log.failure("ping net tally round failed")

    def _version_read(self, version: int) -> Deferred[None] | None:
        if (version == self._version and not self.fallback
                and self._clock.seconds() - self._full_read < FULL_READ_SECONDS):
            return None
        return read_down(self._redis, self._prefix).addCallback(self._tallied)

    def _read_done(self, _: Any) -> None:
        self._reading = None

    def _tallied(self, result: tuple[int, dict[str, Any]]) -> None:
        self._version, self.down = result
        self._full_read = self._clock.seconds()
        self._set_fallback(False)
        now = self._clock.seconds()
        members = self.peers.members()
        for gone in set(self.dampener.states) - set(members):
            self.dampener.forget(gone)
        for target in members:
            if target != self.self_name:
                self._apply(target, target in self.down, now)
        self._watch()

    def _watch(self) -> None:
        """Recount the held-down peers this node observes (their voters may have died)."""
        self.ballot.watch(n for n in self._targets if n in self.down)

    def _tally_failed(self, failure: Any) -> None:
        self._version = None
        self._set_fallback(True)
        self._apply_own(self._clock.seconds())

    def _apply_own(self, now: float) -> None:
        """Verdicts from this node's own observations (ballot box unreachable)."""
        for target in self._targets:
            self._apply(target, target in self.ballot.wanted, now)

    def _apply(self, target: str, raw_down: bool, now: float) -> None:
        changed = self.dampener.update(target, raw_down, now)
        if changed is None:
            return
        verdict = self.dampener.states[target]
        self.peers.set_available(target, changed)
        self.metrics.verdict_changes.labels(available=str(changed).lower()).inc()
        self.metrics.peers_down.set(sum(1 for n in self.peers.members() if self.peers.is_down(n)))
        record = self.down.get(target) or {}
        log.info("ping net verdict: {peer} {state} (votes {votes}/{needed}, hold {hold}s)",
                 peer=target, state="available" if changed else "unavailable",
                 available=changed, observer=self.self_name,
                 votes=len(record.get("voters") or []) or None, needed=record.get("needed"),
                 hold=verdict.hold, mode="fallback" if self.fallback else "ballot",
                 event="pingnet_verdict")
        if self.fallback:
            return
        d = self.ballot.record_verdict(target, changed, now)
        d.addErrback(lambda failure: None)

    def _set_fallback(self, on: bool) -> None:
        if on == self.fallback:
            return
        self.fallback = on
        self._version = None
        self.metrics.fallback.set(1 if on else 0)
        if on:
            log.warn("ping net: ballot box (Redis) unreachable; {node} decides from its own "
                     "observations", node=self.self_name, event="pingnet_ballot", reachable=False)
        else:
            log.info("ping net: ballot box (Redis) reachable again", node=self.self_name,
                     event="pingnet_ballot", reachable=True)

    # -- operators ---------------------------------------------------------------
    def view_of(self, name: str) -> dict[str, Any]:
        """The verdict fields of `GET /pingnet/status` for peer `name`."""
        verdict = self.dampener.states.get(name)
        record = self.down.get(name) or {}
        return {"available": self.peers.is_available(name),
                "since": verdict.since if verdict else None,
                "hold": verdict.hold if verdict else 0.0,
                "changes": verdict.changes if verdict else 0,
                "voters": list(record.get("voters") or []),
                "needed": record.get("needed"),
                "observed": name in self._targets,
                "my_vote": name in self.ballot.wanted}
