"""`GET /pingnet/status`: a node's own view, and the master's cluster view.

`add_pingnet_routes(app)` is called in the class body of a prism or store
API whose instances have a `pingnet` attribute (a `PingNet`, or None when the
ping net is disabled).  `add_cluster_pingnet_routes(app)` is for the master:
its instances provide `redis`, `clock`, `config.redis.prefix` and
`peers.list()` (the registry).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from klein import Klein
from twisted.web.iweb import IRequest

from stretchfs.errors import NotReady
from stretchfs.pingnet.ballot import read_tallies
from stretchfs.pingnet.verdict import count_all
from stretchfs.redisstore import RedisStore
from stretchfs.web.auth import cluster_key_required
from stretchfs.web.jsonio import write_json


def add_pingnet_routes(app: Klein) -> None:
    """Register `GET /pingnet/status` (this node's view, cluster key required: a prism's
    listener is public, and peer names and addresses are not) on a prism or store app."""

    @app.route("/pingnet/status", methods=["GET"])
    @cluster_key_required
    def get_pingnet_status(self: Any, request: IRequest) -> bytes:
        net = getattr(self, "pingnet", None)
        if net is None:
            raise NotReady("the ping net is disabled on this node")
        return write_json(request, net.status())


async def cluster_view(redis: RedisStore, prefix: str,
                       list_peers: Callable[[], Awaitable[list[dict[str, Any]]]],
                       now: float) -> dict[str, Any]:
    """Per registered peer: its voters, the majority verdict, and since when."""
    registry = [p for p in await list_peers() if p.get("role") in ("prism", "store")]
    names = [str(p["name"]) for p in registry]
    votes, records = await read_tallies(redis, prefix, names, now)
    active = [str(p["name"]) for p in registry if p.get("active", True)]
    # The master is not a voter: tally from the point of view of no peer, using the
    # last recorded verdicts to decide who counts as an available voter.
    available = [name for name in active
                 if (records.get(name) or {}).get("available", True)]
    tallies = count_all(active, available, "", votes)
    rows = []
    for peer in registry:
        name = str(peer["name"])
        tally = tallies.get(name)
        record = records.get(name) or {}
        verdict_up = peer.get("active", True) and not (tally is not None and tally.down)
        rows.append({
            "name": name, "role": peer.get("role"), "host": peer.get("host"),
            "ping_port": peer.get("ping_port"), "active": peer.get("active", True),
            "writable": peer.get("writable", True),
            "available": bool(verdict_up),
            "voters": sorted(votes.get(name, set())),
            "counted": list(tally.voters) if tally else [],
            "needed": tally.needed if tally else None,
            "since": record.get("since"), "recorded_by": record.get("by"),
            "recorded_available": record.get("available"),
        })
    return {"time": now, "peers": rows,
            "down": [row["name"] for row in rows if not row["available"]]}


def add_cluster_pingnet_routes(app: Klein) -> None:
    """Register `GET /pingnet/status` (the cluster view, cluster key required: it names
    every peer's host and port) on the master's app."""

    @app.route("/pingnet/status", methods=["GET"])
    @cluster_key_required
    async def get_pingnet_status(self: Any, request: IRequest) -> bytes:
        view = await cluster_view(self.redis, self.config.redis.prefix, self.peers.list,
                                  self.clock.seconds())
        return write_json(request, view)
