"""The ping net's verdicts on the master's dashboard.

The dashboard is refreshed every few seconds by every open browser, so
`ClusterVerdicts` keeps the cluster view (see `status.cluster_view`) fresh
in the background, every `REFRESH_SECONDS`, and the dashboard reads the
cached copy.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stretchfs.periodic import PeriodicService
from stretchfs.pingnet.status import cluster_view
from stretchfs.redisstore import RedisStore

log = Logger()
REFRESH_SECONDS = 2.0


class ClusterVerdicts(PeriodicService):
    """A cached cluster view of the ping net, for the dashboard."""

    def __init__(self, redis: RedisStore, prefix: str,
                 list_peers: Callable[[], Awaitable[list[dict[str, Any]]]], clock: Any) -> None:
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

        def failed(failure: Any) -> None:
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
