"""`GET /repair/status`: the repair planner's state as stored in Redis (any master answers)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from klein import Klein
from twisted.web.iweb import IRequest

from stretchfs.config import MasterConfig
from stretchfs.master.drain import current_states, short_without
from stretchfs.master.keys import Keys
from stretchfs.master.lease import lease_holder
from stretchfs.master.lua import text
from stretchfs.redisstore import RedisStore
from stretchfs.web.auth import cluster_key_required
from stretchfs.web.jsonio import write_json

if TYPE_CHECKING:
    from stretchfs.master.api import MasterAPI


async def repair_status(redis: RedisStore, keys: Keys, config: MasterConfig,
                        now: float, peers: list[dict[str, Any]]) -> dict[str, object]:
    """The planner (lease holder), queue length, the last scan's counts, totals, the
    stores that are down or lost, and for each drained store (among `peers`) how many
    hashes it holds are still short of `replicas` counted copies without it."""
    holder = await lease_holder(redis, keys.repair_lease)
    queued, flat_status, flat_stores = await redis.pipeline([
        ["ZCARD", keys.repair_queue], ["HGETALL", keys.repair_status],
        ["HGETALL", keys.repair_stores]])
    status = {text(k): text(v) for k, v in zip(flat_status[0::2], flat_status[1::2])}
    stores = {text(k): json.loads(v) for k, v in zip(flat_stores[0::2], flat_stores[1::2])}
    return {
        "replicas": config.cluster.replicas, "lost_after": config.repair.lost_after,
        "planner": {"owner": holder.owner, "token": holder.token,
                    "live": holder.expires is not None and holder.expires > now},
        "queue": int(queued),
        "scanned": float(status["scanned"]) if "scanned" in status else None,
        "hashes": int(status.get("hashes", 0)),
        "copies": json.loads(status["counts"]) if "counts" in status else {},
        "repaired": {name: int(status.get(name, 0)) for name in ("copies", "bytes", "failures",
                                                                  "trims")},
        "stores": stores,
        "draining": await draining(redis, keys, peers, config.cluster.replicas),
    }


async def draining(redis: RedisStore, keys: Keys, peers: list[dict[str, Any]],
                   replicas: int) -> dict[str, int]:
    """Each drained store with the number of hashes it holds that other stores do not yet
    hold `replicas` counted copies of."""
    drained = [p["name"] for p in peers if p["role"] == "store" and p["drained"]]
    if not drained:
        return {}
    stores = await current_states(redis, keys, peers)
    return {name: await short_without(redis, keys, name, stores, replicas)
            for name in drained}


def add_repair_routes(app: Klein) -> None:
    """Register `GET /repair/status` (cluster key) on the master's app."""

    @app.route("/repair/status", methods=["GET"])
    @cluster_key_required
    async def get_repair_status(self: "MasterAPI", request: IRequest) -> bytes:
        status = await repair_status(self.redis, self.keys, self.config,
                                     self.clock.seconds(), await self.peers.list())
        return write_json(request, status)
