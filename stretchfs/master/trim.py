"""Trim: content over `[cluster] replicas` counted copies loses the copy that adds least.

When a lost store comes back (or a repair raced a returning store), the scan puts
content with more counted copies than `replicas` in `P repair:trim`.  Each planner
round takes up to `TRIM_BATCH` of it (past the content it just trimmed), re-reads
each row, picks the copy to remove
(`repair.pick_trim`: keep the best zone and host spread), and asks the other
counted holders whether they hold it (`POST /content/exists`, one call per store
for the whole batch): only when at least `replicas` of them answer yes does it
ask the chosen store to remove its copy (`POST /content/remove`, which
unpublishes it through the store's journal).  One copy per content per round:
content still over stays for the next round, and content just trimmed waits
`RECENT_SECONDS` for the removal to reach the inventory.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Callable, Mapping, Protocol

from twisted.logger import Logger

from stretchfs.errors import StretchFSError
from stretchfs.master.keys import Keys
from stretchfs.master.lease import Lease
from stretchfs.master.lua import text
from stretchfs.master.metrics import RepairMetrics
from stretchfs.master.repair import StoreState, counted_holders, pick_trim
from stretchfs.redisstore import RedisStore

log = Logger()

TRIM_BATCH = 100
RECENT_SECONDS = 60.0


class TrimTarget(Protocol):
    """A store as the trimmer sees it."""

    async def exists(self, hashes: list[str],
                     timeout: float | None = None) -> Mapping[str, Mapping[str, object]]:
        """`{hash: {"exists", ...}}` for each of `hashes`."""

    async def remove(self, sha1: str) -> Mapping[str, object]:
        """Remove the store's copy of `sha1`."""


class Trimmer:
    """Removes the extra copies of over-replicated content, holders confirmed first."""

    def __init__(self, redis: RedisStore, keys: Keys, lease: Lease, replicas: int,
                 store_client: Callable[[str], TrimTarget], metrics: RepairMetrics) -> None:
        self._redis = redis
        self._keys = keys
        self._lease = lease
        self._replicas = replicas
        self._store_client = store_client
        self._metrics = metrics
        self._recent: dict[str, float] = {}   # sha1 -> trimmed, not before

    async def run(self, stores: Mapping[str, StoreState], copying: Callable[[str], bool],
                  now: float) -> int:
        """Trim one copy of each content at the head of the trim set (none being copied
        or just trimmed); the number of copies removed."""
        self._recent = {h: t for h, t in self._recent.items() if t > now}
        # Past the content just trimmed (still in the set while over), so it cannot keep
        # the rest waiting for RECENT_SECONDS.
        head = [h for h in map(text, await self._redis.execute(
            "ZRANGEBYSCORE", self._keys.repair_trim, "-inf", "+inf", "LIMIT", 0,
            TRIM_BATCH + len(self._recent))) if not copying(h) and h not in self._recent]
        head = head[:TRIM_BATCH]
        if not head:
            return 0
        rows = await self._redis.execute("HMGET", self._keys.inventory_rows, *head)
        done: list[str] = []
        plans: dict[str, tuple[str, list[str]]] = {}   # sha1 -> (victim, other holders)
        for sha1, row in zip(head, rows):
            holders = json.loads(row)["stores"] if row is not None else []
            victim = pick_trim(holders, stores, self._replicas)
            if victim is not None:
                plans[sha1] = (victim, [h for h in counted_holders(holders, stores)
                                        if h != victim and stores[h].serves])
            elif len(counted_holders(holders, stores)) <= self._replicas:
                done.append(sha1)
        present = await self._confirm(plans, stores)
        removed = 0
        for sha1, (victim, _) in plans.items():
            if present[sha1] < self._replicas or not self._lease.valid():
                continue
            try:
                await self._store_client(stores[victim].url).remove(sha1)
            except StretchFSError as exc:
                log.debug("trim of {sha1} from {victim} failed: {error}", sha1=sha1,
                          victim=victim, error=str(exc))
                continue
            self._recent[sha1] = now + RECENT_SECONDS
            removed += 1
        if done:
            await self._lease.fenced([["ZREM", self._keys.repair_trim] + done])
        if removed:
            self._metrics.trims.inc(removed)
            await self._lease.fenced([["HINCRBY", self._keys.repair_status, "trims", removed]])
            log.info("repair trim: {removed} extra copies removed", removed=removed,
                     event="repair_trim")
        return removed

    async def _confirm(self, plans: Mapping[str, tuple[str, list[str]]],
                       stores: Mapping[str, StoreState]) -> Counter[str]:
        """How many of the other holders of each content confirm their copy: one `exists`
        per store for all the content it keeps (a store that fails confirms none)."""
        asks: dict[str, list[str]] = {}
        for sha1, (_, keepers) in plans.items():
            for name in keepers:
                asks.setdefault(name, []).append(sha1)
        present: Counter[str] = Counter()
        for name, hashes in sorted(asks.items()):
            try:
                answer = await self._store_client(stores[name].url).exists(hashes)
            except StretchFSError as exc:
                log.debug("trim: {store} did not confirm its copies: {error}", store=name,
                          error=str(exc))
                continue
            present.update(h for h in hashes if answer.get(h, {}).get("exists"))
        return present
