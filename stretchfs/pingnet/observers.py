"""Who observes whom: K observers per peer, inside its site, rotating, agreed without talking.

Every `rotate` seconds (an *epoch*, numbered from the shared clock) the
active members of the registry are placed on rings in an order every node
derives alike (sorted by SHA-256 of ``"<epoch>:<name>"``), one ring per
site; each member observes the `k` members that follow it on its site's
ring, so every member has exactly min(k, site size - 1) observers, all in
its own site, never itself, and every pair of a site meets over the epochs.
With a site of at most k + 1 members every member observes every other
member of its site (all pairs, as small clusters always did; one site, the
default, is the whole cluster).  Nobody probes across sites, so a WAN
partition between sites takes nobody down: each site decides only on its
own members, and the sites share only the resulting down set.  A member
alone in its site has nobody there to observe it: it is observed by the
`k` members before it on the ring of all members instead.

Around each epoch boundary (within `grace` seconds either side, which also
covers clocks that disagree by up to `grace`) both epochs hold: a node
probes the targets of both, and a peer is down when a majority of the
observers of either epoch vote against it, so no verdict flips while the
new observers gather evidence.  Pure: callers pass `now`.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from typing import Mapping

Members = Mapping[str, str]   # member name -> its site
_Assignment = tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]


def _ring(names: tuple[str, ...], epoch: int) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda n: hashlib.sha256(
        "{}:{}".format(epoch, n).encode("utf-8")).digest()))


def _follow(ring: tuple[str, ...], k: int) -> dict[str, tuple[str, ...]]:
    """Each member of `ring` -> the min(k, len - 1) members before it (its observers)."""
    n = len(ring)
    width = min(k, n - 1)
    return {name: tuple(ring[(i - j) % n] for j in range(1, width + 1))
            for i, name in enumerate(ring)}


@lru_cache(maxsize=8)
def _assignment(members: tuple[tuple[str, str], ...], epoch: int, k: int) -> _Assignment:
    """(targets per member, observers per member) for one epoch."""
    sites: dict[str, list[str]] = {}
    for name, site in members:
        sites.setdefault(site, []).append(name)
    observers: dict[str, tuple[str, ...]] = {}
    lone = [group[0] for group in sites.values() if len(group) == 1]
    for group in sites.values():
        if len(group) > 1:
            observers.update(_follow(_ring(tuple(group), epoch), k))
    if lone:
        everyone = _follow(_ring(tuple(name for name, _ in members), epoch), k)
        observers.update((name, everyone[name]) for name in lone)
    targets: dict[str, list[str]] = {name: [] for name, _ in members}
    for target, watchers in observers.items():
        for watcher in watchers:
            targets[watcher].append(target)
    return {name: tuple(sorted(t)) for name, t in targets.items()}, observers


def _key(members: Members) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(members.items()))


class Rotation:
    """The observer assignment of a set of members over time."""

    def __init__(self, k: int, rotate_seconds: float, grace_seconds: float) -> None:
        self.k = k
        self.rotate = rotate_seconds
        self.grace = grace_seconds

    def epochs(self, now: float) -> list[int]:
        """The epochs that hold at `now`: one, or two near a boundary."""
        return sorted({math.floor((now + d) / self.rotate) for d in (-self.grace, 0.0,
                                                                     self.grace)})

    def targets(self, members: Members, name: str, now: float) -> list[str]:
        """The members `name` probes at `now` (sorted; empty when it is no member)."""
        if name not in members:
            return []
        key = _key(members)
        out: set[str] = set()
        for epoch in self.epochs(now):
            out.update(_assignment(key, epoch, self.k)[0][name])
        return sorted(out)

    def electorates(self, members: Members, target: str, now: float) -> list[list[str]]:
        """The observers of `target` in each epoch that holds at `now`: a majority of
        any one of these lists puts it down."""
        if target not in members:
            return []
        key = _key(members)
        return [sorted(_assignment(key, epoch, self.k)[1][target])
                for epoch in self.epochs(now)]
