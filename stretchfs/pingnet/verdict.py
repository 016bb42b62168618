"""Pure verdict logic: majority arithmetic and flap dampening.

Nothing here does I/O or reads a clock; callers pass `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

MAX_HOLD_FACTOR = 16


def needed_votes(voters: int) -> int:
    """Votes that make a strict majority of `voters` (0 voters: never)."""
    return voters // 2 + 1


@dataclass(frozen=True)
class Tally:
    """The vote count on one peer, from one node's point of view."""

    target: str
    voters: tuple[str, ...]
    eligible: int
    needed: int

    @property
    def down(self) -> bool:
        """True when a strict majority of the eligible voters voted against the target."""
        return self.eligible > 0 and len(self.voters) >= self.needed


def count_votes(target: str, active: Iterable[str], available: Iterable[str], self_name: str,
                votes: Iterable[str]) -> Tally:
    """Tally the votes on `target`.

    Eligible voters are the active peers other than the target that are
    themselves available in this node's view (this node always counts as
    available to itself).  Votes of anyone else (a downed or unknown voter)
    are ignored.
    """
    up = set(available) | {self_name}
    eligible = {name for name in active if name != target and name in up}
    counted = tuple(sorted(set(votes) & eligible))
    return Tally(target=target, voters=counted, eligible=len(eligible),
                 needed=needed_votes(len(eligible)))


def count_all(active: Iterable[str], available: Iterable[str], self_name: str,
              votes: Mapping[str, Iterable[str]]) -> dict[str, Tally]:
    """Tally every active peer except this node."""
    active = list(active)
    available = set(available)
    return {target: count_votes(target, active, available, self_name, votes.get(target, ()))
            for target in active if target != self_name}


@dataclass
class PeerVerdict:
    """This node's dampened verdict on one peer."""

    available: bool = True
    since: float = 0.0
    raw_up_since: float | None = None
    readmitted_at: float | None = None
    repeats: int = 0
    hold: float = 0.0
    changes: int = 0


@dataclass
class Dampener:
    """Turns raw majority verdicts into dampened ones.

    A peer goes down at once.  It comes back as soon as the raw verdict says
    so, unless it is flapping: when it goes down again less than
    `flap_window` seconds after it was readmitted, it must answer
    continuously for a hold of `flap_hold` seconds, doubling with each further
    repeat (at most MAX_HOLD_FACTOR times) before it is readmitted.
    """

    flap_window: float
    flap_hold: float
    states: dict[str, PeerVerdict] = field(default_factory=dict)

    def state(self, name: str, now: float) -> PeerVerdict:
        """The verdict record of `name` (created available)."""
        verdict = self.states.get(name)
        if verdict is None:
            verdict = self.states[name] = PeerVerdict(since=now)
        return verdict

    def update(self, name: str, raw_down: bool, now: float) -> bool | None:
        """Feed one raw verdict; returns the new availability when it changed."""
        verdict = self.state(name, now)
        if verdict.available:
            if not raw_down:
                return None
            recent = (verdict.readmitted_at is not None
                      and now - verdict.readmitted_at < self.flap_window)
            verdict.repeats = verdict.repeats + 1 if recent else 0
            verdict.hold = 0.0 if verdict.repeats == 0 else min(
                self.flap_hold * 2 ** (verdict.repeats - 1), self.flap_hold * MAX_HOLD_FACTOR)
            verdict.available = False
            verdict.since = now
            verdict.raw_up_since = None
            verdict.changes += 1
            return False
        if raw_down:
            verdict.raw_up_since = None
            return None
        if verdict.raw_up_since is None:
            verdict.raw_up_since = now
        if now - verdict.raw_up_since < verdict.hold:
            return None
        verdict.available = True
        verdict.since = now
        verdict.readmitted_at = now
        verdict.changes += 1
        return True

    def forget(self, name: str) -> None:
        """Drop a peer that left the registry."""
        self.states.pop(name, None)
