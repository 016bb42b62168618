"""Pure repair rules: which copies count, which stores are lost, where a new copy goes.

No I/O and no clock here; the planner (`master/planner.py`) passes `now`.
A copy *counts* when its store is registered, active, not lost and not
drained (a drained store still serves its copies as a source).  A store
is *down* while the ping net's majority votes it down, and *lost* once it
has been down for `lost_after` seconds; while only down its copies still
count (they are expected back) but it cannot serve as a source or target.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, TypedDict

UP, DOWN, LOST = "up", "down", "lost"


class DownRecord(TypedDict):
    """A store that is not up: `down` or `lost`, voted down since `since`."""

    state: str
    since: float


@dataclass(frozen=True)
class StoreState:
    """What the planner knows of one registered store."""

    name: str
    host: str
    url: str
    zone: tuple[str, str]
    active: bool
    writable: bool
    state: str
    free: int | None = None  # bytes above min_free, when the probe knows
    drained: bool = False

    @property
    def keeps(self) -> bool:
        """Its copies are there or expected back (drained or not)."""
        return self.active and self.state != LOST

    @property
    def counts(self) -> bool:
        """Its copies count toward `replicas`."""
        return self.keeps and not self.drained

    @property
    def serves(self) -> bool:
        """It can be a source of a copy now."""
        return self.active and self.state == UP


def next_state(previous: DownRecord | None, voted_down: bool, now: float,
               lost_after: float) -> DownRecord | None:
    """A store's repair record after one look at the votes (None: up).

    `previous` is `{"state": down|lost, "since"}` or None; a store returns to
    up (None) as soon as the votes clear, also from lost.
    """
    if not voted_down:
        return None
    since = float(previous["since"]) if previous else now
    return {"state": LOST if now - since >= lost_after else DOWN, "since": since}


def store_states(peers: Iterable[Mapping[str, object]], records: Mapping[str, DownRecord],
                 disks: Mapping[str, Mapping[str, int]]) -> dict[str, StoreState]:
    """Every registered store with its state (`records`: down/lost records by name) and its
    free space above `min_free` (`disks`: the node probe's latest `/stat` disks)."""
    states = {}
    for peer in peers:
        if peer.get("role") != "store":
            continue
        name = str(peer["name"])
        disk = disks.get(name)
        free = int(disk["free"]) - int(disk["min_free"]) if disk else None
        record = records.get(name)
        states[name] = StoreState(name=name, host=str(peer.get("host", "")),
                                  url=str(peer.get("url", "")),
                                  zone=(str(peer.get("site", "")), str(peer.get("zone", ""))),
                                  active=bool(peer.get("active", True)),
                                  writable=bool(peer.get("writable", True)),
                                  state=str(record["state"]) if record else UP, free=free,
                                  drained=bool(peer.get("drained", False)))
    return states


def counted_holders(holders: Iterable[str], stores: Mapping[str, StoreState]) -> list[str]:
    """The holders whose copies count."""
    return [h for h in holders if h in stores and stores[h].counts]


def copyable(holders: Iterable[str], stores: Mapping[str, StoreState]) -> bool:
    """Some holder's copy is there or expected back: a counted or a drained one."""
    return any(h in stores and stores[h].keeps for h in holders)


def copies_label(count: int, replicas: int) -> str:
    """The metrics/status bucket of a content with `count` counted copies."""
    return str(count) if count < replicas else "{}+".format(replicas)


def pick_source(holders: Iterable[str], stores: Mapping[str, StoreState],
                busy: Mapping[str, int], limit: int, avoid: Iterable[str] = ()) -> str | None:
    """A holder that is up (counted or drained) and has a free slot: not one of `avoid`
    (it failed before) if possible, then the least busy."""
    avoid = set(avoid)
    ready = [h for h in holders if h in stores and stores[h].serves and busy.get(h, 0) < limit]
    return min(ready, key=lambda h: (h in avoid, busy.get(h, 0), h)) if ready else None


def pick_target(holders: Iterable[str], stores: Mapping[str, StoreState], size: int,
                busy: Mapping[str, int], limit: int, avoid: Iterable[str] = ()) -> str | None:
    """Where a new copy goes, by the upload rules: an up, active, writable store with room
    and a free slot that holds no copy and is not one of `avoid`, never on a host that
    holds a counted copy, a new zone first, then the most free space."""
    holding = set(holders)
    avoid = set(avoid)
    kept = [stores[h] for h in counted_holders(holding, stores)]
    hosts = {s.host for s in kept}
    zones = Counter(s.zone for s in kept)
    pool = [s for s in stores.values()
            if s.name not in holding | avoid and s.serves and s.writable and s.host not in hosts
            and busy.get(s.name, 0) < limit and (s.free is None or s.free >= size)]
    if not pool:
        return None
    best = min(pool, key=lambda s: (zones[s.zone], -(s.free or 0), busy.get(s.name, 0), s.name))
    return best.name


def pick_trim(holders: Iterable[str], stores: Mapping[str, StoreState],
               replicas: int) -> str | None:
    """The counted copy to remove from content with more than `replicas`: on an up store,
    the one that adds least (its zone, then its host, holds another counted copy; then the
    least free space).  None when the content is not over `replicas` or no holder is up."""
    counted = counted_holders(holders, stores)
    if len(counted) <= replicas:
        return None
    zones = Counter(stores[h].zone for h in counted)
    hosts = Counter(stores[h].host for h in counted)
    ready = [stores[h] for h in counted if stores[h].serves]
    if not ready:
        return None
    return min(ready, key=lambda s: (-zones[s.zone], -hosts[s.host], s.free or 0, s.name)).name


class ByteBudget:
    """Bytes per second each store may spend on repair copies: a leaky bucket per store.
    A copy may start while a store's bucket holds less than one second's worth, and adds
    its size (so one large copy is allowed, and then the store rests)."""

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._levels: dict[str, tuple[float, float]] = {}  # store -> (bytes, when)

    def _level(self, store: str, now: float) -> float:
        level, at = self._levels.get(store, (0.0, now))
        return max(0.0, level - self._rate * (now - at))

    def allows(self, store: str, now: float) -> bool:
        """`store` may take part in one more copy now (always, without a rate)."""
        return self._rate <= 0 or self._level(store, now) < self._rate

    def spend(self, store: str, size: int, now: float) -> None:
        """A copy of `size` bytes involving `store` starts now."""
        if self._rate > 0:
            self._levels[store] = (self._level(store, now) + size, now)
