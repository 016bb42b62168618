"""Which stores are up, down or lost, as the repair planner sees them (docs/repair.md).

Each round the lease holder tallies the ping net's votes (`pingview.cluster_view`),
moves each registered store between up, down and lost (`repair.next_state`), keeps
the down and lost records in Redis (`P repair:stores`, written through the lease's
fenced script), so a restarted or newly elected planner counts from when a store
went down, and logs one line per change of a store.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from twisted.logger import Logger

from stretchfs.master.keys import Keys
from stretchfs.master.lease import Lease
from stretchfs.master.lua import text
from stretchfs.master.pingview import cluster_view
from stretchfs.master.repair import (
    DOWN,
    LOST,
    DownRecord,
    StoreState,
    next_state,
    store_states,
)
from stretchfs.redisstore import Arg, RedisStore

log = Logger()

Peers = list[dict[str, Any]]


async def down_records(redis: RedisStore, keys: Keys) -> dict[str, DownRecord]:
    """The stores down or lost now, as the planner last recorded them."""
    flat = await redis.execute("HGETALL", keys.repair_stores)
    return {text(k): json.loads(v) for k, v in zip(flat[0::2], flat[1::2])}


class StoreWatch:
    """The planner's view of the stores, kept in Redis."""

    def __init__(self, redis: RedisStore, keys: Keys, lease: Lease, lost_after: float,
                 disks: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self._redis = redis
        self._keys = keys
        self._lease = lease
        self._lost_after = lost_after
        self._disks = disks
        self._known: set[str] | None = None       # registered stores at the last update

    def forget(self) -> None:
        """Forget the stores seen so far (another master may have watched meanwhile)."""
        self._known = None

    async def update(self, peers: Peers, now: float) -> dict[str, StoreState] | None:
        """Every registered store with its state now; None when the lease was lost."""
        async def known() -> Peers:
            return peers

        view = await cluster_view(self._redis, self._keys.prefix, known, now)
        voted_down = {row["name"] for row in view["peers"]
                      if row["role"] == "store" and row["active"] and not row["available"]}
        old = await down_records(self._redis, self._keys)
        names = {str(p["name"]) for p in peers if p.get("role") == "store"}
        new: dict[str, DownRecord] = {}
        for name in sorted(names):
            record = next_state(old.get(name), name in voted_down, now,
                                self._lost_after)
            if record is not None:
                new[name] = record
        commands: list[list[Arg]] = []
        for name in sorted(set(old) | set(new)):
            before, after = old.get(name), new.get(name)
            if before == after:
                continue
            self._log_change(name, before, after, name in names, now)
            if after is None:
                commands.append(["HDEL", self._keys.repair_stores, name])
            else:
                commands.append(["HSET", self._keys.repair_stores, name, json.dumps(after)])
        for name in sorted((self._known or set()) - names - set(old)):
            log.info("store {store} removed: its copies no longer count", store=name,
                     event="repair_store", state="removed")
        self._known = names
        if commands and not await self._lease.fenced(commands):
            return None
        return store_states(peers, new, self._disks())

    def _log_change(self, name: str, before: DownRecord | None, after: DownRecord | None,
                    registered: bool, now: float) -> None:
        """One line per change of a store's state."""
        if after is None:
            state = "back" if registered else "removed"
            log.info("store {store} {state} (was {previous})", store=name, state=state,
                     previous=before["state"] if before else "up", event="repair_store")
        elif before is None or before["state"] != after["state"]:
            if after["state"] == DOWN:
                log.info("store {store} down: its copies still count until it is lost in "
                         "{seconds} s", store=name, seconds=self._lost_after,
                         state=DOWN, event="repair_store")
            else:
                log.info("store {store} lost after {seconds:.0f} s down: its copies no longer "
                         "count", store=name, seconds=now - float(after["since"]), state=LOST,
                         event="repair_store")
