"""Self-healing end to end: each failure scenario on a real local cluster under load.

The outages are shortened (the operator's `stretchfs chaos` defaults are 60 s
for the master and 30 s for Redis); every promise is checked the same way.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import pytest

from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.scenarios import SCENARIOS, Options, explain_row
from tests.e2e.conftest import cluster_in_netns, running_cluster

SHORT = Options(seed_files=8, threads=3, settle_seconds=3.0, master_down_seconds=8.0,
                redis_down_seconds=8.0, upload_mib=48)


@pytest.fixture(scope="module")
def cluster_dir(tmp_path_factory, repo_root_module: str) -> Iterator[str]:
    """A local cluster (Redis, master, 2 prisms, 3 stores) shared by the scenarios."""
    workdir = str(tmp_path_factory.mktemp("chaos"))
    with running_cluster(workdir, repo_root_module, prisms=2, stores=3):
        yield workdir


@pytest.fixture(scope="module")
def repo_root_module() -> str:
    """Absolute path of the checkout (module scope)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# Each of these has its own test and cluster (a namespace, or short `lost_after`).
OWN_CLUSTER = {"network-cut", "store-lost", "store-returns", "drain", "bit-rot",
               "master-kill", "redis-failover", "redis-partition"}


@pytest.mark.parametrize("scenario", [name for name in SCENARIOS if name not in OWN_CLUSTER])
def test_scenario_keeps_its_promises(cluster_dir: str, scenario: str) -> None:
    """The scenario's report shows no broken promise and no lost data, and the cluster is whole."""
    handle = ClusterHandle(cluster_dir)
    report = SCENARIOS[scenario](handle, SHORT)
    assert report.ok, report.explain()
    assert report.data_lost == 0
    for node in handle.nodes():
        assert handle.health(node["name"])[0] == 200, node["name"]


def test_network_cut_in_a_private_namespace(tmp_path, repo_root: str) -> None:
    """A store cut off by nftables (in our own namespace) is marked down and votes no one down."""
    workdir = str(tmp_path / "cluster")
    with cluster_in_netns(workdir, repo_root, "sfs-chaos") as stretchfs:
        run = stretchfs("chaos", "network-cut", "--workdir", workdir, "--seed-files", "5",
                        "--json", timeout=300)
        assert "[" in run.stdout, run.stdout + run.stderr
        report = json.loads(run.stdout[run.stdout.index("["):])[0]
        assert report["ok"], explain_row(report)
        assert not any("skipped" in note for note in report["notes"]), report
        assert run.returncode == 0, run.stderr
