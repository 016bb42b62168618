"""The master's view of the ping net: `GET /pingnet/status` and the dashboard's verdicts.

`cluster_view` reads the down set the nodes' tally script keeps (`ping:down`,
the verdict of each peer's current observers) and also tallies every
registered peer's live votes from the point of view of no voter: a peer is
down when either holds it down.  Up to K+1 nodes (all pairs) both agree; past
that only the down set can reach a majority, since only a peer's K observers
vote on it.  The dashboard is refreshed
every few seconds by every open browser, so `ClusterVerdicts` keeps the view
fresh in the background, every `REFRESH_SECONDS`, and the dashboard reads the
cached copy.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from stretchfs.periodic import PeriodicService
from stretchfs.pingnet.ballot import read_down, read_tallies
from stretchfs.pingnet.verdict import count_all
from stretchfs.redisstore import RedisStore
from stretchfs.web.auth import cluster_key_required
from stretchfs.web.jsonio import write_json

log = Logger()
REFRESH_SECONDS = 2.0


async def cluster_view(redis: RedisStore, prefix: str,
                       list_peers: Callable[[], Awaitable[list[dict[str, Any]]]],
                       now: float) -> dict[str, Any]:
    """Per registered peer: its voters, the majority verdict, and since when."""
    registry = [p for p in await list_peers() if p.get("role") in ("prism", "store")]
    names = [str(p["name"]) for p in registry]
    votes, records = await read_tallies(redis, prefix, names, now)
    _, held_down = await read_down(redis, prefix)
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
        held = held_down.get(name)
        verdict_up = (peer.get("active", True) and held is None
                      and not (tally is not None and tally.down))
        rows.append({
            "name": name, "role": peer.get("role"), "host": peer.get("host"),
            "ping_port": peer.get("ping_port"), "active": peer.get("active", True),
            "writable": peer.get("writable", True),
            "available": bool(verdict_up),
            "voters": sorted(votes.get(name, set())),
            "counted": list(held["voters"]) if held else list(tally.voters) if tally else [],
            "needed": held["needed"] if held else tally.needed if tally else None,
            "since": held["since"] if held else record.get("since"),
            "recorded_by": held["by"] if held else record.get("by"),
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


class ClusterVerdicts(PeriodicService):
    """A cached cluster view of the ping net, for the dashboard."""

    def __init__(self, redis: RedisStore, prefix: str,
                 list_peers: Callable[[], Awaitable[list[dict[str, Any]]]],
                 clock: IReactorTime) -> None:
        super().__init__(clock, REFRESH_SECONDS)
        self._redis = redis
        self._prefix = prefix
        self._list_peers = list_peers
        self._failing = False
        self.rows: dict[str, dict[str, Any]] = {}

    def run_once(self) -> Deferred[None]:
        """Refresh the view (the next refresh waits for it); failures are logged once."""
        d = Deferred.fromCoroutine(cluster_view(self._redis, self._prefix, self._list_peers,
                                                self._clock.seconds()))

        def done(view: dict[str, Any]) -> None:
            self.rows = {row["name"]: row for row in view["peers"]}
            if self._failing:
                self._failing = False
                log.info("ping-net dashboard view refreshed again")

        def failed(failure: Failure) -> None:
            if not self._failing:
                self._failing = True
                log.warn("ping-net dashboard view not refreshed: {error}",
                         error=str(failure.value))

        return d.addCallbacks(done, failed)

    def summary(self, name: str) -> dict[str, Any] | None:
        """The verdict on peer `name` for the dashboard (None before the first view):
        `available`, `votes` ("counted/needed"), `voters` counted, `since` (when down)."""
        row = self.rows.get(name)
        if row is None:
            return None
        return {"available": bool(row["available"]),
                "votes": "{}/{}".format(len(row["counted"]), row["needed"])
                if row["needed"] else "0",
                "voters": list(row["counted"]),
                "since": None if row["available"] else row.get("since")}
