"""The master's probe of its nodes: stores' disk space, prisms' mirror lag, and who is down."""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.task import Clock

from stretchfs.master.nodeprobe import NodeProbe, lag_seconds


class FakeNodes:
    """Answers /stat and /mirror/status as the node named by the Host header; `down` 503s."""

    app = Klein()

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.keys: list[bytes] = []

    @app.route("/stat")
    def stat(self, request: Any) -> bytes:
        return self._answer(request, {"name": "s", "writable": True,
                                      "disk": {"total": 1000, "free": 400, "min_free": 10}})

    @app.route("/mirror/status")
    def mirror_status(self, request: Any) -> bytes:
        return self._answer(request, {
            "inventory": {"entries": 5, "cursor": "1700000001500-0", "loaded": True},
            "purchases": {"entries": 0, "cursor": "1700000000000-3", "loaded": True}})

    def _answer(self, request: Any, body: dict[str, Any]) -> bytes:
        self.keys.append(request.getHeader(b"authorization"))
        if request.getRequestHostname().decode() in self.down:
            request.setResponseCode(503)
            return b'{"error": "not ready"}'
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body).encode()


def test_probe_keeps_disk_space_mirror_lag_and_failures() -> None:
    """Each round keeps the disk of every store, the lag of every prism's mirrors, and an
    error for a node that does not answer well; the next round sees it come back."""
    clock = Clock()
    nodes = FakeNodes()
    nodes.down.add("s2")
    peers = [{"name": "s1", "role": "store", "url": "http://s1"},
             {"name": "s2", "role": "store", "url": "http://s2"},
             {"name": "p1", "role": "prism", "url": "http://p1"}]

    async def list_peers() -> list[dict[str, Any]]:
        return peers

    async def cursors() -> dict[str, str]:
        return {"inventory": "1700000001500-0", "purchases": "1700000004000-0"}

    probe = NodeProbe(StubTreq(nodes.app.resource()), "k" * 32, clock, list_peers, cursors)
    probe.startService()
    results = probe.results
    assert results["s1"]["ok"] is True
    assert results["s1"]["disk"] == {"total": 1000, "free": 400, "min_free": 10}
    assert results["s2"]["ok"] is False and "503" in results["s2"]["error"]
    mirrors = results["p1"]["mirrors"]
    assert mirrors["inventory"]["lag_seconds"] == 0.0
    assert mirrors["purchases"]["lag_seconds"] == 4.0
    assert set(nodes.keys) == {b"Bearer " + b"k" * 32}
    nodes.down.clear()
    clock.advance(2.0)
    assert probe.results["s2"]["ok"] is True and probe.results["s2"]["checked"] == 2.0
    probe.stopService()
    assert clock.getDelayedCalls() == []


def test_lag_is_unknown_for_a_mirror_not_loaded() -> None:
    """A mirror without a cursor has no lag; one ahead of the read cursor is in step."""
    assert lag_seconds("1700000000000-0", None) is None
    assert lag_seconds("1700000000000-0", "1700000000000-1") == 0.0
