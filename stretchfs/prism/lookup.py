"""Where content is, never a false "not found": the mirror, else the master, else the stores.

One chain for detail, exists, purchase and delivery (docs/prism.md, "No false
not found"): what the mirror lacks is asked of the master (`lookup_many`, in
batches), what the master lacks of every available store (`StoreProbe`).  A
miss the master or a silent store cannot confirm is a 503, never a 404.  A
caller may need more than some store (`usable`: delivery needs an available
one): an unusable record goes on to the next step, and the last record seen is
the answer when no step finds a usable one.  Limited callers (`/static`, no
session) probe at most `PROBE_PER_SECOND` times a second, then a miss is a 503.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from stretchfs import errors
from stretchfs.prism.mirror import InventoryMirror, InventoryRecord
from stretchfs.wire.upstream import translate

log = Logger()

MASTER_LOOKUP_BATCH = 1000
PROBE_SECONDS = 2.0
PROBE_PER_SECOND = 20.0
PROBE_BURST = 20

Usable = Callable[[InventoryRecord], bool]


def _anywhere(record: InventoryRecord) -> bool:
    return True


class StoreProbe:
    """Asks every available store which of some hashes it holds."""

    def __init__(self, peers: Any, store_client: Any) -> None:
        self._peers = peers
        self._store_client = store_client

    async def holders(self, hashes: list[str]) -> dict[str, InventoryRecord]:
        """The records of the `hashes` some store holds (one call per store).

        NotReady when a store did not answer and some hash was found nowhere:
        that store may hold the only copy.
        """
        stores = self._peers.candidates("store") if self._peers is not None else []
        if not stores or self._store_client is None or not hashes:
            return {}
        calls = [ensureDeferred(self._store_client(peer).exists(hashes, timeout=PROBE_SECONDS))
                 for peer in stores]
        results = await DeferredList(calls, consumeErrors=True)
        found: dict[str, InventoryRecord] = {}
        silent = []
        for peer, (ok, answer) in zip(stores, results):
            if not ok or not isinstance(answer, dict):
                log.warn("store {store} did not answer an existence probe", store=peer.name)
                silent.append(peer.name)
                continue
            for sha1 in hashes:
                row = answer.get(sha1)
                if isinstance(row, dict) and row.get("exists"):
                    known = found.get(sha1) or InventoryRecord(
                        str(row.get("ext") or "bin"), int(row.get("size") or 0), ())
                    found[sha1] = InventoryRecord(known.ext, known.size,
                                                  known.stores + (peer.name,))
        if found:
            log.info("{count} content(s) unknown to the master found on stores",
                     count=len(found), event="store_probe_hit")
        if silent and len(found) < len(set(hashes)):
            raise errors.NotReady("store(s) {} did not answer; cannot tell whether the "
                                  "content exists".format(", ".join(sorted(silent))))
        return found


class ContentLookup:
    """The chain mirror -> master -> stores, with the store probes rationed on `clock`."""

    def __init__(self, *, inventory: Callable[[], InventoryMirror], master: Any,
                 probe: StoreProbe, clock: IReactorTime) -> None:
        self._inventory = inventory
        self._master = master
        self._probe = probe
        self._clock = clock
        self._probe_tokens = float(PROBE_BURST)
        self._probe_refilled = clock.seconds()

    def local(self, sha1: str) -> InventoryRecord | None:
        """The mirror's record of `sha1` alone (the synchronous fast path)."""
        return self._inventory().get(sha1)

    async def find(self, hashes: Iterable[str], usable: Usable = _anywhere,
                   limited: bool = False) -> dict[str, InventoryRecord | None]:
        """{hash: the first usable record, else the last one seen, else None (nowhere)}.

        NotReady (or the master's client error) when a miss cannot be confirmed.
        """
        mirror = self._inventory()
        seen: dict[str, InventoryRecord | None] = {sha1: mirror.get(sha1) for sha1 in hashes}

        def wanting(candidates: Iterable[str]) -> list[str]:
            return [sha1 for sha1 in candidates
                    if (record := seen[sha1]) is None or not usable(record)]

        ask = wanting(seen)
        if ask:
            seen.update(await self._from_master(ask, unseen=any(seen[s] is None for s in ask)))
            ask = wanting(ask)
        if ask and limited and not self._take_probe():
            if any(seen[sha1] is None for sha1 in ask):
                raise errors.NotReady("content not in the local mirror; too many lookups of "
                                      "unknown content, retry shortly")
            return seen
        if ask:
            seen.update(await self._probe.holders(ask))
        return seen

    async def find_one(self, sha1: str, usable: Usable = _anywhere,
                       limited: bool = False) -> InventoryRecord:
        """The record `find` answers for `sha1`; NotFound when it is nowhere."""
        record = (await self.find([sha1], usable, limited))[sha1]
        if record is None:
            raise errors.NotFound("content not found")
        return record

    async def _from_master(self, hashes: list[str], unseen: bool) -> dict[str, InventoryRecord]:
        """The master's records of `hashes` that name stores.  A failure is raised when
        some hash was not seen at all (`unseen`), else it only means no news."""
        found: dict[str, InventoryRecord] = {}
        for start in range(0, len(hashes), MASTER_LOOKUP_BATCH):
            batch = hashes[start:start + MASTER_LOOKUP_BATCH]
            try:
                rows = await self._master.lookup_many(batch) or {}
            except (errors.PeerUnavailable, errors.UpstreamError) as exc:
                if unseen:
                    raise translate(exc, "master", "look the content up") from None
                return found
            for sha1 in batch:
                row = rows.get(sha1)
                if row and row.get("stores"):
                    found[sha1] = InventoryRecord(row.get("ext") or "bin",
                                                  int(row.get("size") or 0),
                                                  tuple(row["stores"]))
        return found

    def _take_probe(self) -> bool:
        """Token bucket of store probes for limited callers."""
        now = self._clock.seconds()
        self._probe_tokens = min(float(PROBE_BURST), self._probe_tokens +
                                 (now - self._probe_refilled) * PROBE_PER_SECOND)
        self._probe_refilled = now
        if self._probe_tokens < 1:
            return False
        self._probe_tokens -= 1
        return True
