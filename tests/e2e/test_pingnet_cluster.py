"""Real processes: 1 master, 3 stores, 2 prisms; the ping net routes around a dead or hung store."""

from __future__ import annotations

import signal
import time
from typing import Any, Callable

from stretchfs.devcluster.cluster import LocalCluster
from stretchfs.devcluster.process import NodeProcess, http_get_json
from stretchfs.master.pingview import REFRESH_SECONDS


def _wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError("timed out after {} s waiting until {}".format(timeout, what))


class Watcher:
    """Reads /pingnet/status of the nodes and remembers every peer ever seen down."""

    def __init__(self, nodes: dict[str, dict[str, Any]], key: str) -> None:
        self.nodes = nodes
        self.key = key
        self.ever_down: set[tuple[str, str]] = set()
        self.last: dict[str, dict[str, bool]] = {}

    def views(self, observers: list[str]) -> dict[str, dict[str, bool]]:
        views = {}
        for name in observers:
            code, body = http_get_json(self.nodes[name]["url"] + "/pingnet/status", timeout=1.0,
                                       key=self.key)
            if code != 200:
                views[name] = {}
                continue
            views[name] = {p["name"]: p["available"] for p in body["peers"]}
            self.ever_down |= {(name, peer) for peer, up in views[name].items() if not up}
        self.last = views
        return views

    def all_see(self, observers: list[str], peer: str, available: bool,
                size: int = 4) -> bool:
        views = self.views(observers)
        return all(len(view) == size and (observer == peer or view.get(peer) is available)
                   for observer, view in views.items())


def test_pingnet_marks_killed_and_stopped_store_down_and_back(tmp_path, repo_root: str,
                                                              monkeypatch) -> None:
    """Every survivor marks a SIGKILLed or SIGSTOPped store down, and up again; nobody else."""
    monkeypatch.setenv("PYTHONPATH", repo_root)
    cluster = LocalCluster(str(tmp_path / "cluster"), prisms=2, stores=3, say=lambda s: None)
    try:
        state = cluster.up(timeout=60)
        nodes = {n["name"]: n for n in state["nodes"] if n["role"] != "master"}
        names = sorted(nodes)
        watch = Watcher(nodes, state["cluster_key"])
        try:
            _wait("every node sees the 4 others available",
                  lambda: watch.all_see(names, "store3", True), 25)
        except AssertionError:
            raise AssertionError("views: {}".format(watch.last)) from None

        survivors = [n for n in names if n != "store3"]
        cluster.processes["store3"].signal(signal.SIGKILL)
        took = _wait("every survivor marks the killed store3 down",
                     lambda: watch.all_see(survivors, "store3", False), 10)
        assert took < 6
        spec = next(n for n in cluster.nodes if n.name == "store3")
        restarted = NodeProcess("store", "store3", spec.config, spec.log)
        cluster.processes["store3"] = restarted
        restarted.start()
        restarted.wait_listening(30)
        _wait("every node sees the restarted store3 available",
              lambda: watch.all_see(names, "store3", True), 15)

        survivors = [n for n in names if n != "store2"]
        cluster.processes["store2"].signal(signal.SIGSTOP)
        try:
            _wait("every survivor marks the stopped store2 down",
                  lambda: watch.all_see(survivors, "store2", False), 10)
        finally:
            cluster.processes["store2"].signal(signal.SIGCONT)
        _wait("every node sees the resumed store2 available",
              lambda: watch.all_see(names, "store2", True), 10)

        key = state["cluster_key"]
        code, view = http_get_json(state["master_url"] + "/pingnet/status", key=key)
        assert code == 200 and view["down"] == []
        assert sorted(row["name"] for row in view["peers"]) == names

        def dashboard_all_available() -> bool:
            code, dashboard = http_get_json(state["master_url"] + "/dashboard/state", key=key)
            assert code == 200
            return all(node["pingnet"]["available"] for node in dashboard["nodes"])

        # The dashboard's view is refreshed every REFRESH_SECONDS: it follows within that.
        _wait("the dashboard shows every node available", dashboard_all_available,
              REFRESH_SECONDS + 3)
        wrong = {(observer, peer) for observer, peer in watch.ever_down
                 if peer not in ("store2", "store3")}
        assert wrong == set()
        logged = {(name, event["peer"]) for name in names
                  for event in cluster.processes[name].events()
                  if event.get("event") == "pingnet_verdict" and not event["available"]}
        assert {peer for _name, peer in logged} == {"store2", "store3"}
    finally:
        cluster.down()
