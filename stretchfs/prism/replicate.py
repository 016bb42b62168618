"""Placing and writing copies of a new content on stores.

Stores publish every put to the master themselves, at once; the prism adds
the new copies to its own mirror so it answers for them immediately.

`choose_stores` picks targets among the ping net's candidates (active,
writable, available): this prism's site first, never two copies on one host,
and distinct zones where possible.  `Replicator.store` PUTs the file to them
in parallel, replaces a failed store by the next candidate, and reports the
copies made; it needs `min_copies` to succeed and logs any shortfall below
`replicas` for repair.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, cast

from twisted.internet.defer import CancelledError, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from stretchfs.errors import InsufficientStorage, PeerUnavailable, StretchFSError, UpstreamError
from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.prism.mirror import InventoryMirror
from stretchfs.wire.protocols import ContentTarget

log = Logger()

SHORTAGE_WAIT_SECONDS = 0.5
SHORTAGE_WAITS = 6
PARTIAL_SHORTAGE_EVERY_SECONDS = 60.0


@dataclass
class Placement:
    """Hosts and zones already holding (or about to hold) a copy."""

    hosts: set[str] = field(default_factory=set)
    zones: Counter[tuple[str, str]] = field(default_factory=Counter)
    tried: set[str] = field(default_factory=set)

    def take(self, record: PeerRecord) -> None:
        """`record` holds or gets a copy."""
        self.hosts.add(record.host)
        self.zones[(record.site, record.zone)] += 1
        self.tried.add(record.name)

    def release(self, record: PeerRecord) -> None:
        """`record` failed: its host is free again, and its zone unless another copy is
        there (it stays tried)."""
        self.hosts.discard(record.host)
        zone = (record.site, record.zone)
        self.zones[zone] -= 1
        if self.zones[zone] <= 0:
            del self.zones[zone]


def choose_stores(candidates: Iterable[PeerRecord], count: int, placement: Placement,
                  site: str) -> list[PeerRecord]:
    """Up to `count` of `candidates` on new hosts, new zones first, own site first."""
    pool = [c for c in candidates if c.name not in placement.tried]
    pool.sort(key=lambda c: c.site != site)
    chosen: list[PeerRecord] = []
    for need_new_zone in (True, False):
        for record in pool:
            if len(chosen) >= count:
                return chosen
            if record in chosen or record.host in placement.hosts:
                continue
            if need_new_zone and (record.site, record.zone) in placement.zones:
                continue
            chosen.append(record)
            placement.take(record)
    return chosen


@dataclass
class StoredCopies:
    """The outcome of writing a content."""

    ext: str
    copies: int
    stores: list[str]
    deduplicated: bool


class Replicator:
    """Writes a content to `replicas` stores, deduplicating against the inventory."""

    def __init__(self, *, peers: Peers, inventory: Callable[[], InventoryMirror],
                 store_client: Callable[[PeerRecord], ContentTarget], replicas: int,
                 min_copies: int, site: str, clock: IReactorTime,
                 refresh_registry: Callable[[], object]) -> None:
        self._peers = peers
        self._inventory = inventory
        self._store_client = store_client
        self.replicas = replicas
        self.min_copies = min_copies
        self._site = site
        self._turn = itertools.count()
        self._clock = clock
        self._refresh_registry = refresh_registry
        self._last_partial_wait: float | None = None

    async def _candidates(self, need: int) -> list[PeerRecord]:
        """Writable available stores; with too few, ask for a fresh registry and wait a bit.

        A prism that just started may have downloaded the registry before (all)
        the stores registered: it should not fail or under-replicate uploads for
        a whole refresh period.  With no store at all it waits up to 3 s; with
        some but fewer than needed, 1 s at most once a minute (a cluster that
        simply has too few stores does not pay it on every upload).
        """
        found = self._peers.candidates("store", writable=True)
        if len(found) >= need:
            return found
        waits = SHORTAGE_WAITS
        if found:
            now = self._clock.seconds()
            if self._last_partial_wait is not None and \
                    now - self._last_partial_wait < PARTIAL_SHORTAGE_EVERY_SECONDS:
                return found
            self._last_partial_wait = now
            waits = 2
        version = self._peers.registry_version
        self._refresh_registry()
        for _ in range(waits):
            await deferLater(self._clock, SHORTAGE_WAIT_SECONDS)
            if self._peers.registry_version != version:
                break
        return self._peers.candidates("store", writable=True)

    async def store(self, sha1: str, ext: str, source: str | bytes,
                    size: int) -> StoredCopies:
        """Make sure `replicas` copies of `source` (a file's path, or the bytes) exist."""
        record = self._inventory().get(sha1)
        placement = Placement()
        holders: list[str] = []
        if record is not None:
            ext = record.ext
            for name in record.stores:
                placement.tried.add(name)
                peer = self._peers.get(name)
                if peer is not None and self._peers.is_available(name):
                    holders.append(name)
                    placement.take(peer)
        need = self.replicas - len(holders)
        if need <= 0:
            return StoredCopies(ext, len(holders), holders, True)
        candidates = await self._candidates(need)
        if candidates:
            turn = next(self._turn) % len(candidates)
            candidates = candidates[turn:] + candidates[:turn]
        first = choose_stores(candidates, need, placement, self._site)
        errors: list[StretchFSError] = []

        async def slot(target: PeerRecord | None) -> PeerRecord | None:
            for _attempt in range(len(candidates) + 1):
                if target is None:
                    return None
                try:
                    await self._store_client(target).put(sha1, ext, source, size)
                    return target
                except CancelledError:
                    raise  # the client went away: no spare either
                except Exception as exc:  # noqa: BLE001 - any failure: try the next store
                    if isinstance(exc, (PeerUnavailable, UpstreamError, OSError)):
                        log.warn("PUT of {sha1} to {store} failed: {error}", sha1=sha1,
                                 store=target.name, error=str(exc))
                    else:
                        log.failure("PUT of {sha1} to {store} failed", sha1=sha1,
                                    store=target.name)
                    errors.append(exc if isinstance(exc, StretchFSError)
                                  else PeerUnavailable(str(exc)))
                    placement.release(target)
                    spare = choose_stores(candidates, 1, placement, self._site)
                    target = spare[0] if spare else None
            return None

        results = await DeferredList([ensureDeferred(slot(t)) for t in first],
                                     consumeErrors=True)
        failed = [cast(Failure, result) for ok, result in results if not ok]
        if any(failure.check(CancelledError) for failure in failed):
            raise CancelledError()  # the upload's client went away
        for failure in failed:
            log.failure("PUT of {sha1} failed unexpectedly", failure, sha1=sha1)
        written = [result for ok, result in results if ok and result is not None]
        for peer in written:
            self._inventory().add(sha1, peer.name, ext, size)
        copies = len(holders) + len(written)
        stores = holders + [p.name for p in written]
        if copies < self.replicas:
            log.warn("content {sha1} has {copies} of {replicas} copies (shortfall for repair)",
                     sha1=sha1, copies=copies, replicas=self.replicas, event="copy_shortfall")
        if copies < self.min_copies:
            if errors and all(isinstance(e, UpstreamError) and e.code == 507 for e in errors):
                raise InsufficientStorage("every store is full")
            if not candidates and not holders:
                raise PeerUnavailable("no writable store available")
            raise PeerUnavailable("only {} of the {} required copies could be written".format(
                copies, self.min_copies))
        return StoredCopies(ext, copies, stores, False)
