"""Self-healing end to end: each failure scenario on a real local cluster under load.

The outages are shortened (the operator's `stretchfs chaos` defaults are 60 s
for the master and 30 s for Redis); every promise is checked the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest

from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.scenarios import SCENARIOS, Options
from tests.e2e.conftest import running_cluster

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


def _netns_available() -> bool:
    probe = "sfs-probe-{}".format(os.getpid())
    try:
        added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    if added.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return subprocess.run(["which", "nft"], capture_output=True).returncode == 0


def test_network_cut_in_a_private_namespace(tmp_path, repo_root: str) -> None:
    """A store cut off by nftables (in our own namespace) is marked down and votes no one down."""
    if not _netns_available():
        pytest.skip("network namespaces or nft are not permitted here (needs root and nftables)")
    namespace = "sfs-chaos-{}".format(os.getpid())
    workdir = str(tmp_path / "cluster")
    env = dict(os.environ, PYTHONPATH=repo_root)
    inside = ["ip", "netns", "exec", namespace, sys.executable, "-m", "stretchfs.cli.main"]
    subprocess.run(["ip", "netns", "add", namespace], check=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"],
                       check=True, timeout=10)
        up = subprocess.run(inside + ["dev", "up", "--detach", "--workdir", workdir],
                            capture_output=True, text=True, timeout=180, env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        run = subprocess.run(inside + ["chaos", "network-cut", "--workdir", workdir,
                                       "--seed-files", "5", "--json"],
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert '"ok": true' in run.stdout
        assert "skipped" not in run.stdout
    finally:
        subprocess.run(inside + ["dev", "down", "--workdir", workdir], capture_output=True,
                       timeout=120, env=env)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
