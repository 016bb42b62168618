"""Who observes whom: K observers per peer, rotating, agreed without talking.

Every `rotate` seconds (an *epoch*, numbered from the shared clock) the
active members of the registry are placed on a ring in an order every node
derives alike (sorted by SHA-256 of ``"<epoch>:<name>"``); each member
observes the `k` members that follow it, so every member has exactly `k`
observers, never itself, and every pair meets over the epochs.  With
N <= k + 1 every member observes every other (all pairs, as small clusters
always did).

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
from typing import Iterable


def _ring(names: tuple[str, ...], epoch: int) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda n: hashlib.sha256(
        "{}:{}".format(epoch, n).encode("utf-8")).digest()))


@lru_cache(maxsize=8)
def _assignment(names: tuple[str, ...], epoch: int,
                k: int) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(targets per member, observers per member) for one epoch."""
    ring = _ring(names, epoch)
    n = len(ring)
    width = min(k, n - 1)
    targets = {name: tuple(ring[(i + j) % n] for j in range(1, width + 1))
               for i, name in enumerate(ring)}
    observers = {name: tuple(ring[(i - j) % n] for j in range(1, width + 1))
                 for i, name in enumerate(ring)}
    return targets, observers


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

    def targets(self, members: Iterable[str], name: str, now: float) -> list[str]:
        """The members `name` probes at `now` (sorted; empty when it is no member)."""
        names = tuple(sorted(set(members)))
        if name not in names:
            return []
        out: set[str] = set()
        for epoch in self.epochs(now):
            out.update(_assignment(names, epoch, self.k)[0][name])
        return sorted(out)

    def electorates(self, members: Iterable[str], target: str, now: float) -> list[list[str]]:
        """The observers of `target` in each epoch that holds at `now`: a majority of
        any one of these lists puts it down."""
        names = tuple(sorted(set(members)))
        if target not in names:
            return []
        return [sorted(_assignment(names, epoch, self.k)[1][target])
                for epoch in self.epochs(now)]
