"""Redis behind Sentinel end to end: `dev up --ha` and the `redis-failover` scenario."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.redisha import FAILOVER_LIMIT_SECONDS
from stretchfs.chaos.scenarios import SCENARIOS, Options
from stretchfs.devcluster.cluster import (
    LocalCluster,
    _alive,
    load_state,
    managed_redis,
    stop_detached,
)


@pytest.fixture
def ha_dir(tmp_path, repo_root: str) -> Iterator[str]:
    """A local cluster behind Sentinel (primary, 2 replicas, 3 Sentinels, 2 prisms, 3 stores)."""
    workdir = str(tmp_path / "ha")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = repo_root
    cluster = LocalCluster(workdir, prisms=2, stores=3, ha=True, say=lambda text: None)
    try:
        cluster.up(detach=True, timeout=90)
        yield workdir
    finally:
        stop_detached(workdir, say=lambda text: None)
        cluster.down()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_redis_failover_loses_nothing_acknowledged(ha_dir: str) -> None:
    """The primary SIGKILLed under load: writes work again within 10 s, no acknowledged
    user, purchase or upload is lost, no false verdict, no node restarted; `dev down`
    then stops every Redis process, the restarted one included."""
    state = load_state(ha_dir) or {}
    assert len(state["redis"]["sentinels"]) == 3 and len(state["redis"]["servers"]) == 3
    with open(state["nodes"][0]["config"], encoding="utf-8") as handle:
        assert "sentinels = " in handle.read()
    handle = ClusterHandle(ha_dir)
    report = SCENARIOS["redis-failover"](handle, Options(seed_files=6, threads=3,
                                                         settle_seconds=4.0))
    assert report.ok, report.as_row()
    assert report.data_lost == 0
    assert report.detection_seconds is not None
    assert report.detection_seconds <= FAILOVER_LIMIT_SECONDS
    for node in handle.nodes():
        assert handle.health(node["name"])[0] == 200, node["name"]
    processes = managed_redis(load_state(ha_dir) or {})
    assert len(processes) == 6
    assert all(_alive(p["pid"], "127.0.0.1:{}".format(p["port"])) for p in processes)
    stop_detached(ha_dir, say=lambda text: None)
    assert not any(_alive(p["pid"], "127.0.0.1:{}".format(p["port"])) for p in processes)
