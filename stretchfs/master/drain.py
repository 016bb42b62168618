"""Drain and remove of a store (docs/repair.md): what it holds that is short elsewhere.

A drained store is read-only and its copies stop counting, so the planner copies
everything it holds onto other stores (it may still be their source).  `peer
remove` refuses a store that holds the only counted copy of anything, unless forced.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger

from stretchfs.errors import Conflict, InvalidInput
from stretchfs.master.keys import Keys
from stretchfs.master.lua import text
from stretchfs.master.peers import PeerRegistry
from stretchfs.master.repair import StoreState, counted_holders, store_states
from stretchfs.master.storewatch import down_records
from stretchfs.redisstore import RedisStore

log = Logger()

CHUNK = 1000


async def current_states(redis: RedisStore, keys: Keys,
                         peers: list[dict[str, Any]]) -> dict[str, StoreState]:
    """Every registered store with its state as the planner last recorded it."""
    return store_states(peers, await down_records(redis, keys), {})


async def short_without(redis: RedisStore, keys: Keys, name: str,
                        stores: dict[str, StoreState], wanted: int) -> int:
    """How many hashes store `name` holds that have fewer than `wanted` counted copies on
    other stores."""
    cursor: bytes | str = "0"
    short = 0
    while True:
        cursor, flat = await redis.execute("HSCAN", keys.store_inventory(name), cursor,
                                           "COUNT", CHUNK)
        hashes = [text(h) for h in flat[0::2]]
        rows = await redis.execute("HMGET", keys.inventory_rows, *hashes) if hashes else []
        short += sum(1 for row in rows if row is not None and len(
            set(counted_holders(json.loads(row)["stores"], stores)) - {name}) < wanted)
        if text(cursor) == "0":
            return short


async def drain(registry: PeerRegistry, name: str) -> dict[str, Any]:
    """Mark store `name` read-only and drained; refuse an unknown store, a prism, and the
    last writable store (nothing could take its copies)."""
    record = await registry.get(name)
    if record["role"] != "store":
        raise InvalidInput("{} is a {}: only a store can be drained".format(name, record["role"]))
    others = [p for p in await registry.list() if p["role"] == "store" and p["name"] != name
              and p["active"] and p["writable"] and not p["drained"]]
    if not others:
        raise Conflict("{} is the last writable store: no other store could take its "
                       "copies".format(name))
    record = await registry.update(name, {"writable": False, "drained": True})
    log.info("store {store} drained: read-only, its copies no longer count", store=name,
             event="repair_store", state="drained")
    return record


async def check_remove(redis: RedisStore, keys: Keys, registry: PeerRegistry,
                       name: str) -> None:
    """Refuse (Conflict) to remove a store holding the only counted copy of some hash;
    NotFound for an unknown peer."""
    record = await registry.get(name)
    if record["role"] != "store":
        return
    stores = await current_states(redis, keys, await registry.list())
    count = await short_without(redis, keys, name, stores, 1)
    if count:
        raise Conflict("store {} still holds the only counted copy of {} hashes: drain it "
                       "(`stretchfs peer drain {}`) until `stretchfs repair status` shows "
                       "none, or remove it with --force".format(name, count, name))
