"""Redis behind Sentinel end to end: `dev up --ha` and the `redis-failover` scenario."""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.redisha import FAILOVER_LIMIT_SECONDS
from stretchfs.chaos.scenarios import SCENARIOS, Options, explain_row
from stretchfs.devcluster.cluster import (
    _alive,
    load_state,
    managed_redis,
    stop_detached,
)
from tests.e2e.conftest import cluster_in_netns, running_cluster


@pytest.fixture
def ha_dir(tmp_path, repo_root: str) -> Iterator[str]:
    """A local cluster behind Sentinel (primary, 2 replicas, 3 Sentinels, 2 prisms, 3 stores)."""
    with running_cluster(str(tmp_path / "ha"), repo_root, prisms=2, stores=3,
                         ha=True) as handle:
        yield handle.workdir


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
    assert report.ok, report.explain()
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


def test_redis_partition_in_a_private_namespace(tmp_path, repo_root: str) -> None:
    """The primary cut off by nftables (in our own namespace) keeps running; a replica takes
    over, the old primary rejoins as a replica after the heal, nothing acknowledged is lost."""
    workdir = str(tmp_path / "cluster")
    with cluster_in_netns(workdir, repo_root, "sfs-redis", "--ha",
                          up_timeout=240) as stretchfs:
        run = stretchfs("chaos", "redis-partition", "--workdir", workdir, "--seed-files", "5",
                        "--json", timeout=400)
        assert "[" in run.stdout, run.stdout + run.stderr
        report = json.loads(run.stdout[run.stdout.index("["):])[0]
        assert report["ok"] and report["data_lost"] == 0, explain_row(report)
        assert run.returncode == 0, run.stderr
        assert any("rejoined as a replica" in note for note in report["notes"]), report
