"""The repair planner: brings content back to `[cluster] replicas` counted copies.

Every `[repair] interval` seconds, on the master that holds the lease
(`master/lease.py`; the others only renew their bid):

1. it updates which stores are up, down or lost (`storewatch.StoreWatch`);
2. when the set of stores whose copies count changed, or
   every `[repair] rescan` seconds, it scans every inventory row and queues
   the content with fewer counted copies than `replicas` in a Redis ZSET
   scored by counted copies, so the fewest go first, and records the counts;
3. it takes the head of the queue, re-reads each row and, for content still
   short, picks a source among the live holders and a target by the upload
   rules (`repair.pick_source`, `repair.pick_target`), and asks the target
   store to copy it (`POST /content/fetch`, which verifies the SHA1 and
   publishes the copy).  Content under `[repair] batch_under` bytes goes in
   batches, many per request between one source and one target
   (`POST /content/fetch-batch`).  At most `[repair] per_store` copies (a batch
   is one) involve one store at a time;
4. it trims content over `replicas` counted copies (`trim.Trimmer`).

Queue, store states and progress live in Redis, written only through the
lease's fenced script, so a restarted or newly elected planner carries on.
A copy that already exists is a no-op on the store.  A target that just
answered is taken as a holder for `RECENT_SECONDS` while its publish reaches
the inventory, so the content is not copied twice.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, Mapping, Protocol

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from stretchfs.config import MasterConfig, RepairSettings
from stretchfs.errors import Gone, StretchFSError
from stretchfs.master.inventory import Inventory
from stretchfs.master.keys import Keys
from stretchfs.master.lease import Lease
from stretchfs.master.lua import text
from stretchfs.master.metrics import RepairMetrics
from stretchfs.master.repair import (
    ByteBudget,
    StoreState,
    copies_label,
    copyable,
    counted_holders,
    pick_source,
    pick_target,
)
from stretchfs.master.storewatch import Peers, StoreWatch
from stretchfs.master.trim import Trimmer, TrimTarget
from stretchfs.periodic import PeriodicService
from stretchfs.redisstore import Arg, RedisStore
from stretchfs.wire.store import StoreClient

if TYPE_CHECKING:
    from stretchfs.master.api import MasterAPI

log = Logger()

SCAN_CHUNK = 1000
FEED_PAGE = 1000
RECENT_SECONDS = 60.0
ROWS_FRESH_SECONDS = 2.0              # a row read this recently is not read again to plan
RETRY_SECONDS = 10.0
BATCH_LOG_SECONDS = 10.0
BATCH_BASE_SECONDS = 30.0             # a batch's deadline: this, plus its bytes at...
BATCH_MIN_BYTES_PER_SECOND = 1024**2  # ...this rate, at most `copy_timeout`
COPIED = ("copied", "existed")


class CopyTarget(TrimTarget, Protocol):
    """A store as the planner sees it: it copies a content from another store, and
    answers and removes for the trimmer."""

    async def fetch(self, sha1: str, ext: str | None, source: str,
                    timeout: float | None = None) -> Mapping[str, object]:
        """Copy `sha1` from store `source`; `existed` true when it already had it."""

    async def fetch_batch(self, source: str, items: list[dict[str, Any]],
                          timeout: float | None = None) -> Mapping[str, object]:
        """Copy each of `items` (`{"hash", "ext"}`) from store `source`; `{"items": {hash:
        {"status": copied|existed|missing|corrupt|failed}}}`."""


@dataclass
class Batch:
    """Small content copied from one source to one target in one request."""

    source: str
    target: str
    items: list[tuple[str, str, int]] = field(default_factory=list)  # (sha1, ext, size)
    size: int = 0

    def takes(self, size: int, settings: RepairSettings) -> bool:
        """Room for one more content of `size` bytes."""
        return len(self.items) < settings.batch_items and (
            not self.items or self.size + size <= settings.batch_bytes)

    def add(self, sha1: str, ext: str, size: int) -> None:
        """One more content."""
        self.items.append((sha1, ext, size))
        self.size += size


@dataclass
class Head:
    """The head of the queue as last read (only the lease holder writes the queue)."""

    read_at: float
    offset: int
    window: int
    size: int                  # the queue's length
    hashes: list[str]


class RepairPlanner(PeriodicService):
    """Runs the repair rounds while this master holds the lease."""

    def __init__(self, *, redis: RedisStore, keys: Keys, settings: RepairSettings,
                 replicas: int, clock: IReactorTime, owner: str,
                 list_peers: Callable[[], Awaitable[Peers]],
                 disks: Callable[[], Mapping[str, Mapping[str, int]]],
                 store_client: Callable[[str], CopyTarget], metrics: RepairMetrics,
                 inventory: Inventory) -> None:
        super().__init__(clock, settings.interval)
        self._redis = redis
        self._inventory = inventory
        self._feed_at: str | None = None            # inventory feed read up to here
        self._keys = keys
        self._settings = settings
        self._replicas = replicas
        self._list_peers = list_peers
        self._store_client = store_client
        self.metrics = metrics
        self.lease = Lease(redis, keys.repair_lease, owner, settings.lease_ttl, clock)
        self._watch = StoreWatch(redis, keys, self.lease, settings.lost_after, disks)
        self._trimmer = Trimmer(redis, keys, self.lease, replicas, store_client,
                                metrics)
        self._leading = 0                          # the token we lead with, 0: standing by
        self._counting: frozenset[str] | None = None  # stores whose copies counted at the last scan
        self._scanned = 0.0
        self._busy: Counter[str] = Counter()       # copies in flight per store
        self._budget = ByteBudget(settings.per_store_bytes)
        self._copying: dict[str, Deferred[None]] = {}
        self._dispatched: list[Deferred[None]] = []  # _fill calls waiting on a dispatch
        self._routes: dict[str, tuple[str, str]] = {}  # sha1 -> (source, target) in flight
        self._recent: dict[str, tuple[str, float]] = {}  # sha1 -> (target, until)
        self._avoid: dict[str, set[str]] = {}      # sha1 -> stores that failed it
        self._retry: dict[str, float] = {}         # sha1 -> not before
        self._rows: dict[str, tuple[float, Any]] = {}  # sha1 -> (read at, row or None)
        self._head: Head | None = None
        self._offset = 0
        self._stores: Mapping[str, StoreState] | None = None  # as of the last round
        self._dispatching = False
        self._again = False
        self._fills: set[Deferred[None]] = set()
        self._stopped = False
        self._batch: Counter[str] = Counter()     # started, bytes, copied, failed: not logged yet
        self._logged = 0.0
        self._queued = 0
        self._failing = False

    def run_once(self) -> Deferred[None]:
        """One round; the next runs as usual after a failure.  Redis (or a peer) being
        unavailable is logged once until a round succeeds again; a bug with its traceback."""
        d = Deferred.fromCoroutine(self.run_round())

        def done(_: None) -> None:
            if self._failing:
                self._failing = False
                log.info("repair rounds run again", event="repair_round")

        def failed(failure: Failure) -> None:
            if not failure.check(StretchFSError):
                log.failure("during a repair round", failure)
            elif not self._failing:
                self._failing = True
                log.warn("repair round failed: {error}", error=str(failure.value),
                         event="repair_round")

        return d.addCallbacks(done, failed)

    job = "repair planner"

    def stopService(self) -> None:
        """Stop the rounds and abandon the copies in flight (the next holder redoes them)."""
        super().stopService()
        self._stopped = True
        for copy in list(self._copying.values()):
            copy.cancel()

    async def release(self) -> None:
        """Stop, then give the lease up if held (a clean stop of this master): another
        master leads from its next round instead of after the lease's TTL."""
        if self.running:
            self.stopService()
        if self.lease.token:
            await self.lease.release()
            log.info("repair planner lease given up", event="repair_lease")
        self._leading = 0
        self.metrics.leader.set(0)

    def copies_done(self) -> Deferred[None]:
        """Fires once no copy is in flight and none is being started (tools and tests)."""
        return Deferred.fromCoroutine(self._settle())

    async def _settle(self) -> None:
        while self._copying or self._fills:
            await DeferredList(list(self._copying.values()) + list(self._fills),
                               consumeErrors=True)

    async def run_round(self) -> None:
        """Hold the lease, then update store states, scan when due, and start copies."""
        token = await self.lease.hold()
        if token != self._leading:
            log.info("repair planner {state} (fencing token {token})",
                     state="leading" if token else "standing by", token=token,
                     event="repair_lease")
            # Another master may have led meanwhile: scan afresh, forget who we knew.
            self._leading, self._counting = token, None
            self._watch.forget()
        self.metrics.leader.set(1 if token else 0)
        if not token:
            return
        now = self._clock.seconds()
        peers = await self._list_peers()
        stores = await self._watch.update(peers, now)
        if stores is None:
            return
        # Scan when the stores whose copies count changed (a store merely down changes no
        # count: content short of copies is queued whether or not a source is up now).
        counting = frozenset(n for n, s in stores.items() if s.counts)
        if counting != self._counting or now - self._scanned >= self._settings.rescan:
            feed_at = await self._inventory.cursor()
            if not await self._scan(stores, now):
                return
            self._counting, self._scanned, self._feed_at = counting, now, feed_at
        elif not await self._queue_removed(stores):
            return
        self._stores = stores
        await self._abandon(stores)
        await self._fill()
        await self._trimmer.run(stores, self._copying.__contains__, now)
        if self._log_batch(now):
            self._counting = None      # the queue ran empty: count the result next round

    async def _scan(self, stores: Mapping[str, StoreState], now: float) -> bool:
        """Queue every content short of copies; record the counts.  False when fenced off."""
        replicas = self._replicas
        counts: Counter[str] = Counter()
        cursor: bytes | str = "0"
        while True:
            if not await self.lease.keep():
                return False
            cursor, flat = await self._redis.execute("HSCAN", self._keys.inventory_rows, cursor,
                                                     "COUNT", SCAN_CHUNK)
            short: list[Arg] = []
            over: list[Arg] = []
            for sha1, row in zip(flat[0::2], flat[1::2]):
                holders = json.loads(row)["stores"]
                have = len(counted_holders(holders, stores))
                counts[copies_label(have, replicas)] += 1
                if have < replicas and copyable(holders, stores):
                    short += [have, text(sha1)]
                elif have > replicas:
                    over += [have, text(sha1)]
            writes: list[list[Arg]] = [
                ["ZADD", key, *members] for key, members in
                ((self._keys.repair_queue, short), (self._keys.repair_trim, over)) if members]
            self._head = None
            if writes and not await self.lease.fenced(writes):
                return False
            if text(cursor) == "0":
                break
        labels = [copies_label(n, replicas) for n in range(replicas + 1)]
        summary = {label: counts.get(label, 0) for label in labels}
        for label, value in summary.items():
            self.metrics.hashes.labels(copies=label).set(value)
        return await self.lease.fenced([["HSET", self._keys.repair_status, "scanned", repr(now),
                                         "hashes", sum(counts.values()),
                                         "counts", json.dumps(summary)]])

    async def _queue_removed(self, stores: Mapping[str, StoreState]) -> bool:
        """Queue the content a store dropped since the last look at the inventory feed (a
        scrub's quarantine, an operator's remove) without waiting for the next scan.
        False when fenced off."""
        if self._feed_at is None:
            return True
        try:
            cursor, changes = await self._inventory.feed(self._feed_at, FEED_PAGE)
        except Gone:
            self._counting = None      # the feed moved past us: scan next round
            return True
        self._feed_at = cursor
        removed = sorted({change["hash"] for change in changes if change["op"] == "remove"})
        rows = await self._inventory.lookup_many(removed)
        short: list[Arg] = []
        for sha1 in removed:
            holders = (rows.get(sha1) or {}).get("stores") or []
            have = len(counted_holders(holders, stores))
            if have < self._replicas and copyable(holders, stores):
                short += [have, sha1]
        if short:
            self._head = None
        return not short or await self.lease.fenced([["ZADD", self._keys.repair_queue,
                                                      *short]])

    async def _fill(self) -> None:
        """Start what the queue and the store slots allow; a call while a dispatch runs
        makes it go once more instead of running beside it, and returns when it is done."""
        if self._dispatching:
            self._again = True
            waiter: Deferred[None] = Deferred()
            self._dispatched.append(waiter)
            return await waiter
        self._dispatching = True
        try:
            self._again = True
            while self._again and self._stores is not None and self.lease.valid():
                self._again = False
                await self._dispatch(self._stores, self._clock.seconds())
        finally:
            self._dispatching = False
            waiters, self._dispatched = self._dispatched, []
            for waiter in waiters:
                waiter.callback(None)

    async def _abandon(self, stores: Mapping[str, StoreState]) -> None:
        """Cancel the copies whose source or target the ping net votes down (or that left
        the registry): a hung peer would otherwise hold both stores' slots for
        `copy_timeout`.  Each counts as a failed copy; the content is planned again at once,
        avoiding the store that went down."""
        gone = {sha1: route for sha1, route in self._routes.items()
                if not all(name in stores and stores[name].serves for name in route)}
        for sha1, (source, target) in sorted(gone.items()):
            self._avoid.setdefault(sha1, set()).update(
                name for name in (source, target) if name not in stores or
                not stores[name].serves)
            self.metrics.failures.inc()
            self._batch["failed"] += 1
            log.debug("repair copy of {sha1} from {source} to {target} abandoned: a store "
                      "is down", sha1=sha1, source=source, target=target)
        for copy in {id(self._copying[sha1]): self._copying[sha1] for sha1 in gone}.values():
            copy.cancel()
        if gone:
            await self.lease.fenced([["HINCRBY", self._keys.repair_status, "failures",
                                      len(gone)]])

    def _refill(self) -> None:
        """A copy finished: use its slots now rather than at the next round."""
        if self._stopped:
            return
        fill = Deferred.fromCoroutine(self._fill())
        fill.addErrback(lambda failure: log.failure("while starting repair copies", failure))
        if not fill.called:
            self._fills.add(fill)
            fill.addBoth(lambda _: self._fills.discard(fill))

    def _log_batch(self, now: float) -> bool:
        """One line for the copies of the last `BATCH_LOG_SECONDS`, and one when the queue
        has run empty (then True): never a line per content."""
        batch = self._batch
        if not batch["started"] and not batch["copied"] and not batch["failed"]:
            return False
        empty = not self._copying and self._queued == 0
        if now - self._logged < BATCH_LOG_SECONDS and not empty:
            return False
        log.info("repair batch: {started} copies started ({bytes} bytes), {copied} made, "
                 "{failed} failed; {queued} content queued", started=batch["started"],
                 bytes=batch["bytes"], copied=batch["copied"], failed=batch["failed"],
                 queued=self._queued, event="repair_batch")
        self._batch = Counter()
        self._logged = now
        return empty

    async def _dispatch(self, stores: Mapping[str, StoreState], now: float) -> None:
        """Start copies for the head of the queue, within the per-store limits: content
        under `batch_under` bytes in batches, one per (source, target) pair."""
        self._recent = {h: r for h, r in self._recent.items() if r[1] > now}
        self._retry = {h: t for h, t in self._retry.items() if t > now}
        settings = self._settings
        limit = settings.per_store
        window = max(100, 4 * limit * len(stores))
        if settings.batch_under:
            window += settings.batch_items * limit * len(stores)
        self._queued, head = await self._read_head(window, now)
        self.metrics.queue.set(self._queued)
        if not head:
            self._offset = 0
            return
        # Content being copied or waiting to be retried needs no fresh look at its row.
        hashes = [h for h in head if h not in self._copying and h not in self._retry]
        rows = await self._read_rows(hashes, now)
        done: list[str] = []
        started, started_bytes = 0, 0
        # Stores that spent their bytes/s take no copy this time: as if their slots were full.
        slots = Counter(self._busy)
        for name in stores:
            if not self._budget.allows(name, now):
                slots[name] = limit
        batches: dict[tuple[str, str], Batch] = {}
        serving = [name for name, store in stores.items() if store.serves]
        # Small content first (it restores the most content per second, and a batch of it
        # takes no more slots than one large copy), each kind in queue order.
        found = list(zip(hashes, rows))
        found.sort(key=lambda item: item[1] is not None and
                   int(item[1]["size"]) >= settings.batch_under)
        for sha1, data in found:
            if not any(slots[name] < limit for name in serving) and not any(
                    len(batch.items) < settings.batch_items for batch in batches.values()):
                break                      # every slot taken, every open batch full
            if data is None:
                done.append(sha1)
                continue
            holders = set(data["stores"])
            recent = self._recent.get(sha1)
            if recent is not None:
                holders.add(recent[0])
            have = len(counted_holders(holders, stores))
            # done, or no copy left to copy from
            if have >= self._replicas or not copyable(holders, stores):
                done.append(sha1)
                continue
            avoid = self._avoid.get(sha1, set())
            size = int(data["size"])
            # An open batch that takes this content costs its stores no further slot.
            joinable = {pair for pair, batch in batches.items() if batch.takes(size, settings)
                        and all(self._budget.allows(name, now) for name in pair)} \
                if size < settings.batch_under else set()
            freed = Counter(slots)
            freed.subtract(name for pair in joinable for name in pair)
            pair = _pick(holders, stores, size, freed, limit, avoid)
            if pair is not None and size < settings.batch_under and pair not in joinable:
                pair = _pick(holders, stores, size, slots, limit, avoid)
            if pair is None:
                continue
            if not self.lease.valid():
                break
            source, target = pair
            small = size < settings.batch_under
            if pair not in joinable:
                for name in pair:
                    slots[name] += 1
                if small and pair in batches:     # full for this content: send it as it is
                    self._start_batch(batches.pop(pair), stores[target])
            if small:
                batch = batches.setdefault(pair, Batch(source, target))
                batch.add(sha1, str(data["ext"]), size)
            else:
                self._launch([sha1], source, target, self._copy(
                    sha1, str(data["ext"]), size, source, stores[target]))
            for name in pair:
                self._budget.spend(name, size, now)
                if not self._budget.allows(name, now):
                    slots[name] = limit
            started += 1
            started_bytes += size
        for batch in batches.values():
            self._start_batch(batch, stores[batch.target])
        if done:
            for sha1 in done:
                self._avoid.pop(sha1, None)
                self._rows.pop(sha1, None)
            if self._head is not None:
                gone = set(done)
                self._head.hashes = [h for h in self._head.hashes if h not in gone]
                self._head.size -= len(gone)
            await self.lease.fenced([["ZREM", self._keys.repair_queue] + done])
        # Every store is idle yet nothing in this window could start (each waits on a
        # store that is down): look further down the queue next round.
        idle = not started and not self._copying and len(head) == window
        self._offset = self._offset + window if idle else 0
        self._batch.update(started=started, bytes=started_bytes)

    async def _read_head(self, window: int, now: float) -> tuple[int, list[str]]:
        """The queue's length and `window` content of it from `_offset` on, read again only
        when older than `ROWS_FRESH_SECONDS` or less than half full while the queue holds
        more (this planner forgets its copy whenever it adds to the queue, and takes what
        it removes out of it)."""
        head = self._head
        if head is None or now - head.read_at >= ROWS_FRESH_SECONDS or \
                (head.offset, head.window) != (self._offset, window) or \
                (len(head.hashes) < window // 2 and head.size > len(head.hashes)):
            size, members = await self._redis.pipeline([
                ["ZCARD", self._keys.repair_queue],
                ["ZRANGEBYSCORE", self._keys.repair_queue, "-inf", "+inf", "LIMIT",
                 self._offset, window]])
            head = self._head = Head(now, self._offset, window, int(size),
                                     [text(member) for member in members])
        return head.size, list(head.hashes)

    async def _read_rows(self, hashes: list[str], now: float) -> list[Any]:
        """The inventory rows of `hashes` (None: gone), read again only when older than
        `ROWS_FRESH_SECONDS` or when a copy of the content ended since: a copy that ends
        starts the next at once, and each would otherwise re-read the whole window of the
        queue's head (a copy another process made meanwhile is answered `existed`, or
        trimmed)."""
        self._rows = {h: r for h, r in self._rows.items() if now - r[0] < ROWS_FRESH_SECONDS}
        unread = [h for h in hashes if h not in self._rows]
        if unread:
            values = await self._redis.execute("HMGET", self._keys.inventory_rows, *unread)
            for sha1, row in zip(unread, values):
                self._rows[sha1] = (now, json.loads(row) if row is not None else None)
        return [self._rows[h][1] for h in hashes]

    def _start_batch(self, batch: Batch, target: StoreState) -> None:
        self._launch([sha1 for sha1, _, _ in batch.items], batch.source, batch.target,
                     self._copy_batch(batch, target))

    def _launch(self, hashes: list[str], source: str, target: str,
                work: Coroutine[Any, Any, None]) -> None:
        """Run one request copying `hashes` from `source` to `target`, holding a slot of
        each store until it ends; then use the freed slots at once."""
        self._busy[source] += 1
        self._busy[target] += 1
        copy = Deferred.fromCoroutine(work)
        for sha1 in hashes:
            self._copying[sha1] = copy
            self._routes[sha1] = (source, target)

        def finished(result: object) -> object:
            for sha1 in hashes:
                self._copying.pop(sha1, None)
                self._routes.pop(sha1, None)
            for name in (source, target):
                self._busy[name] -= 1
                if self._busy[name] <= 0:
                    del self._busy[name]
            self._refill()
            return result

        copy.addBoth(finished)
        copy.addErrback(lambda failure: None if failure.check(CancelledError)
                        else log.failure("during a repair copy", failure))

    async def _copy(self, sha1: str, ext: str, size: int, source: str,
                    target: StoreState) -> None:
        client = self._store_client(target.url)
        try:
            answer = await client.fetch(sha1, ext, source, timeout=self._settings.copy_timeout)
        except StretchFSError as exc:
            log.debug("repair copy of {sha1} from {source} to {target} failed: {error}",
                      sha1=sha1, source=source, target=target.name, error=str(exc))
            await self._count([(sha1, size, "failed")], source, target.name)
            return
        await self._count([(sha1, size, "existed" if answer.get("existed") else "copied")],
                          source, target.name)

    async def _copy_batch(self, batch: Batch, target: StoreState) -> None:
        client = self._store_client(target.url)
        timeout = min(self._settings.copy_timeout,
                      BATCH_BASE_SECONDS + batch.size / BATCH_MIN_BYTES_PER_SECOND)
        try:
            answer = await client.fetch_batch(
                batch.source, [{"hash": sha1, "ext": ext} for sha1, ext, _ in batch.items],
                timeout=timeout)
            items = answer.get("items")
            if not isinstance(items, dict):
                items = {}
        except StretchFSError as exc:
            log.debug("repair batch of {count} from {source} to {target} failed: {error}",
                      count=len(batch.items), source=batch.source, target=target.name,
                      error=str(exc))
            items = {}
        outcomes = []
        for sha1, _, size in batch.items:
            item = items.get(sha1)
            outcomes.append((sha1, size, str(item.get("status")) if isinstance(item, dict)
                             else "failed"))
        await self._count(outcomes, batch.source, target.name)

    async def _count(self, outcomes: list[tuple[str, int, str]], source: str,
                     target: str) -> None:
        """Note how each copy of one request ended (copied, existed, or how it failed) and
        add them to the totals in Redis in one write.  A failed content is retried after
        `RETRY_SECONDS`, avoiding the source (its copy was missing or corrupt) or both
        stores."""
        now = self._clock.seconds()
        copies = copied_bytes = failures = 0
        for sha1, size, status in outcomes:
            self._rows.pop(sha1, None)     # its holders changed: read its row again
            if status in COPIED:
                self._recent[sha1] = (target, now + RECENT_SECONDS)
                copies += 1
                copied_bytes += size if status == "copied" else 0
                continue
            failures += 1
            self._avoid.setdefault(sha1, set()).update(
                (source,) if status in ("missing", "corrupt") else (source, target))
            self._retry[sha1] = now + RETRY_SECONDS
            log.debug("repair copy of {sha1} from {source} to {target}: {status}", sha1=sha1,
                      source=source, target=target, status=status)
        self.metrics.copies.inc(copies)
        self.metrics.bytes.inc(copied_bytes)
        self.metrics.failures.inc(failures)
        self._batch.update(copied=copies, failed=failures)
        totals: list[list[Arg]] = [["HINCRBY", self._keys.repair_status, name, value]
                                   for name, value in
                                   (("copies", copies), ("bytes", copied_bytes),
                                    ("failures", failures)) if value]
        if totals:
            await self.lease.fenced(totals)


def _pick(holders: set[str], stores: Mapping[str, StoreState], size: int,
          busy: Mapping[str, int], limit: int, avoid: set[str]) -> tuple[str, str] | None:
    """(source, target) of a copy, or None when either has no free slot."""
    source = pick_source(holders, stores, busy, limit, avoid)
    target = pick_target(holders, stores, size, busy, limit, avoid)
    return None if source is None or target is None else (source, target)


def repair_planner(config: MasterConfig, redis: RedisStore, clock: IReactorTime,
                   http: HTTPClient, api: "MasterAPI") -> RepairPlanner:
    """The planner of a master process: peers from its registry, free space from its node
    probe, a store client per target, metrics on its registry."""
    probe = api.probe

    def disks() -> dict[str, dict[str, int]]:
        return {name: result["disk"] for name, result in probe.results.items()
                if result.get("disk")}

    def store_client(url: str) -> StoreClient:
        return StoreClient(http, url, config.cluster.key, config.cluster.request_timeout, clock)

    return RepairPlanner(redis=redis, keys=api.keys, settings=config.repair,
                         replicas=config.cluster.replicas, clock=clock,
                         owner="{}#{}".format(config.node.name, secrets.token_hex(4)),
                         list_peers=api.peers.list, disks=disks, store_client=store_client,
                         metrics=RepairMetrics(api.metrics_registry), inventory=api.inventory)
