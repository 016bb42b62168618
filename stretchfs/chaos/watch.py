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


def registered_peers(master_url: str, key: str) -> set[str] | None:
    """Names in the master's peer registry now; None when the master does not answer."""
    code, body = http_get_json(master_url + "/peers", timeout=5.0, key=key)
    if code != 200 or not isinstance(body, dict):
        return None
    return {str(peer["name"]) for peer in body.get("peers", [])}


class VerdictWatch:
    """Polls `/pingnet/status` of observers; remembers every (observer, peer) seen down.

    Only peers of the master's registry (read once, when the watch is made) count:
    a peer removed with `stretchfs peer remove` is neither an observer nor a peer
    that can be falsely down, though the nodes list it until their next registry
    download (`[ping] registry_refresh`, 60 s).
    """

    def __init__(self, nodes: list[dict[str, Any]], key: str) -> None:
        masters = [node["url"] for node in nodes if node["role"] == "master"]
        self.registered = registered_peers(masters[0], key) if masters else None
        self.urls = {node["name"]: node["url"] for node in nodes
                     if node["role"] != "master" and self._counts(node["name"])}
        self.key = key
        self.ever_down: set[tuple[str, str]] = set()

    def _counts(self, name: str) -> bool:
        return self.registered is None or name in self.registered

    def view(self, observer: str) -> dict[str, bool] | None:
        """Peer -> available, as `observer` sees it; None if it does not answer (or is
        not registered)."""
        if observer not in self.urls:
            return None
        code, body = http_get_json(self.urls[observer] + "/pingnet/status", timeout=1.0,
                                   key=self.key)
        if code != 200 or not isinstance(body, dict):
            return None
        view = {str(p["name"]): bool(p["available"]) for p in body.get("peers", [])}
        self.ever_down |= {(observer, peer) for peer, up in view.items()
                           if not up and self._counts(peer)}
        return view

    def all_agree(self, observers: list[str], peer: str, available: bool) -> bool:
        """True when every observer (but `peer` itself) sees `peer` as `available`."""
        for observer in observers:
            if observer == peer or observer not in self.urls:
                continue
            view = self.view(observer)
            if view is None or view.get(peer, not available) is not available:
                return False
        return True

    def false_downs(self, allowed: set[str]) -> set[tuple[str, str]]:
        """(observer, peer) pairs ever seen down, except peers in `allowed`."""
        return {(o, p) for o, p in self.ever_down if p not in allowed}
