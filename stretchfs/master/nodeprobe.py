"""The master asks every registered node how it is, for the dashboard.

Every `PROBE_SECONDS` a `NodeProbe` sends each store `GET /stat` (its disk)
and each prism `GET /mirror/status` (its mirrors), all at once, each under
a `PROBE_TIMEOUT_SECONDS` deadline, and keeps the latest answers in
`results` (name -> `{"ok", "checked", "error"?, "disk"?, "mirrors"?}`).  A
mirror's lag is how far its cursor is behind the master's feed cursor read
just before the round: 0 when it has caught up, else the time between the
two cursors (stream ids start with milliseconds).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from stretchfs.errors import StretchFSError
from stretchfs.periodic import PeriodicService
from stretchfs.wire.http import JsonClient

log = Logger()

PROBE_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0


def _stream_id(cursor: object) -> tuple[int, int] | None:
    try:
        ms, _, seq = str(cursor).partition("-")
        return int(ms), int(seq or 0)
    except ValueError:
        return None


def lag_seconds(master_cursor: str, mirror_cursor: object) -> float | None:
    """How far `mirror_cursor` is behind `master_cursor`, None when unknown."""
    ahead, behind = _stream_id(master_cursor), _stream_id(mirror_cursor)
    if ahead is None or behind is None:
        return None
    if behind >= ahead:
        return 0.0
    return max(0.0, (ahead[0] - behind[0]) / 1000.0)


class NodeProbe(PeriodicService):
    """Keeps the latest `/stat` of each store and `/mirror/status` of each prism."""

    def __init__(self, http: HTTPClient, cluster_key: str, clock: IReactorTime,
                 list_peers: Callable[[], Awaitable[list[dict[str, Any]]]],
                 cursors: Callable[[], Awaitable[dict[str, str]]]) -> None:
        super().__init__(clock, PROBE_SECONDS)
        self._http = http
        self._cluster_key = cluster_key
        self._list_peers = list_peers
        self._cursors = cursors
        self.results: dict[str, dict[str, Any]] = {}

    def run_once(self) -> Deferred[None]:
        """One probe round (the next waits for it); failures are logged."""
        d = Deferred.fromCoroutine(self.probe_all())
        return d.addErrback(lambda failure: log.failure("while probing the nodes", failure))

    async def probe_all(self) -> None:
        """One round: every registered prism and store, concurrently."""
        try:
            peers = [p for p in await self._list_peers() if p.get("role") in ("prism", "store")]
            cursors = await self._cursors()
        except StretchFSError as exc:
            log.debug("no probe round: {error}", error=str(exc))
            return
        answers = await gatherResults([Deferred.fromCoroutine(self._probe(peer, cursors))
                                       for peer in peers])
        self.results = {str(peer["name"]): answer for peer, answer in zip(peers, answers)}

    async def _probe(self, peer: dict[str, Any], cursors: dict[str, str]) -> dict[str, Any]:
        client = JsonClient(self._http, str(peer.get("url", "")), self._cluster_key,
                            PROBE_TIMEOUT_SECONDS, self._clock)
        result: dict[str, Any] = {"ok": True}
        try:
            if peer["role"] == "store":
                stat = await client.json("GET", "/stat")
                result["disk"] = {k: stat["disk"][k] for k in ("total", "free", "min_free")}
                result["writable"] = bool(stat.get("writable"))
            else:
                status = await client.json("GET", "/mirror/status")
                result["mirrors"] = {kind: {
                    "entries": mirror.get("entries"), "cursor": mirror.get("cursor"),
                    "loaded": mirror.get("loaded"),
                    "lag_seconds": lag_seconds(cursors.get(kind, ""), mirror.get("cursor"))}
                    for kind, mirror in sorted(status.items())}
        except StretchFSError as exc:
            result = {"ok": False, "error": str(exc)}
        except (KeyError, TypeError, AttributeError):
            result = {"ok": False, "error": "unexpected answer"}
        result["checked"] = self._clock.seconds()
        return result
