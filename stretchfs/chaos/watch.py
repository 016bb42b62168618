"""Reading the ping net's verdicts from every node, and waiting on them."""

from __future__ import annotations

import time
from typing import Any, Callable

from stretchfs.devcluster.process import http_get_json


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> float | None:
    """Poll `check` until it is true; seconds it took, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    return None


class VerdictWatch:
    """Polls `/pingnet/status` of observers; remembers every (observer, peer) seen down."""

    def __init__(self, nodes: list[dict[str, Any]], key: str) -> None:
        self.urls = {node["name"]: node["url"] for node in nodes if node["role"] != "master"}
        self.key = key
        self.ever_down: set[tuple[str, str]] = set()

    def view(self, observer: str) -> dict[str, bool] | None:
        """Peer -> available, as `observer` sees it; None if it does not answer."""
        code, body = http_get_json(self.urls[observer] + "/pingnet/status", timeout=1.0,
                                   key=self.key)
        if code != 200 or not isinstance(body, dict):
            return None
        view = {str(p["name"]): bool(p["available"]) for p in body.get("peers", [])}
        self.ever_down |= {(observer, peer) for peer, up in view.items() if not up}
        return view

    def all_agree(self, observers: list[str], peer: str, available: bool) -> bool:
        """True when every observer (but `peer` itself) sees `peer` as `available`."""
        for observer in observers:
            if observer == peer:
                continue
            view = self.view(observer)
            if view is None or view.get(peer, not available) is not available:
                return False
        return True

    def false_downs(self, allowed: set[str]) -> set[tuple[str, str]]:
        """(observer, peer) pairs ever seen down, except peers in `allowed`."""
        return {(o, p) for o, p in self.ever_down if p not in allowed}
