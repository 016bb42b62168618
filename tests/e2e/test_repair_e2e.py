"""Re-replication end to end: a store killed for good has its copies made again, and
when it returns the extra copies are trimmed."""

from __future__ import annotations

import json
import os
import time

from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.scenarios import SCENARIOS, Options
from stretchfs.devcluster.cluster import LocalCluster, stop_detached
from stretchfs.devcluster.process import http_call

LOST_AFTER_SECONDS = 5.0


def test_a_lost_store_is_repaired_under_load(tmp_path, repo_root: str) -> None:
    """Four stores, replicas 2: after one is killed for good, every hash it held is back
    to 2 copies within the bound, no download fails after detection, and every uploaded
    content downloads with the right SHA1; the master logged the store's state changes
    and its repair batches.  Once the store is back (the scenario restarts it), the
    content above 2 copies is trimmed back through the stores' exists and remove."""
    workdir = str(tmp_path / "cluster")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = repo_root
    cluster = LocalCluster(workdir, prisms=1, stores=4, say=lambda text: None,
                           lost_after=LOST_AFTER_SECONDS)
    try:
        cluster.up(timeout=90)
        handle = ClusterHandle(workdir)
        report = SCENARIOS["store-lost"](handle, Options(seed_files=12, threads=2,
                                                         settle_seconds=2.0,
                                                         repair_seconds=60.0))
        assert report.ok, report.as_row()
        assert report.data_lost == 0
        status, body = http_call("GET", handle.state["master_url"] + "/repair/status",
                                 key=handle.state["cluster_key"])
        assert status == 200 and json.loads(body)["repaired"]["copies"] > 0
        with open(handle.node("master")["log"]) as log:
            events = [json.loads(line) for line in log if line.startswith("{")]
        states = [e.get("state") for e in events if e.get("event") == "repair_store"]
        assert states[:2] == ["down", "lost"], states
        assert any(e.get("event") == "repair_batch" for e in events)
        deadline = time.monotonic() + 60
        while True:
            _, body = http_call("GET", handle.state["master_url"] + "/dashboard/state",
                                key=handle.state["cluster_key"])
            state = json.loads(body)
            if state["repair"]["repaired"]["trims"] > 0 and state["copies"]["3+"] == 0:
                break
            assert time.monotonic() < deadline, (state["repair"], state["copies"])
            time.sleep(1)
        assert state["copies"]["1"] == 0
    finally:
        stop_detached(workdir, say=lambda text: None)
        cluster.down()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_a_drained_store_is_emptied_removed_and_stopped_under_load(tmp_path,
                                                                   repo_root: str) -> None:
    """Four stores, replicas 2: a drained store's content is copied elsewhere, it is then
    removed without --force and stopped; no download fails and nothing is lost."""
    workdir = str(tmp_path / "cluster")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = repo_root
    cluster = LocalCluster(workdir, prisms=1, stores=4, say=lambda text: None,
                           lost_after=LOST_AFTER_SECONDS)
    try:
        cluster.up(timeout=90)
        handle = ClusterHandle(workdir)
        report = SCENARIOS["drain"](handle, Options(seed_files=12, threads=2,
                                                    settle_seconds=2.0, repair_seconds=60.0))
        assert report.ok, report.as_row()
        assert report.data_lost == 0 and not report.failed
        with open(handle.node("master")["log"]) as log:
            events = [json.loads(line) for line in log if line.startswith("{")]
        assert [e.get("state") for e in events if e.get("event") == "repair_store"][:1] == [
            "drained"]
    finally:
        stop_detached(workdir, say=lambda text: None)
        cluster.down()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
