"""The dev cluster's work folder: secrets readable by their owner only."""

from __future__ import annotations

import os
import stat
from typing import Iterator

import pytest

from stretchfs.devcluster.cluster import LocalCluster, plan_nodes
from stretchfs.devcluster.redisacl import MASTER_USER, NODE_USER


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """Run under the common umask 022, which leaves new files world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


LOGINS = {MASTER_USER: ("redis://127.0.0.1:1/0", "pw-master"),
          NODE_USER: ("redis://127.0.0.1:1/0", "pw-node")}


def test_configs_and_cluster_json_are_private(tmp_path, usual_umask) -> None:
    """The work folder is 0700, and every config and cluster.json (key, password) is 0600."""
    cluster = LocalCluster(str(tmp_path / "dev"), prisms=1, stores=1, say=lambda text: None)
    cluster.prepare_workdir()
    cluster.nodes = plan_nodes(cluster.workdir, 1, 1)
    cluster.write_configs(LOGINS)
    cluster.save_state()
    assert _mode(cluster.workdir) == 0o700
    assert [_mode(node.config) for node in cluster.nodes] == [0o600] * 3
    assert _mode(cluster.state_path) == 0o600


def test_rewritten_files_become_private(tmp_path, usual_umask) -> None:
    """A config or cluster.json left world-readable by an older run is replaced by a 0600 one."""
    cluster = LocalCluster(str(tmp_path / "dev"), prisms=0, stores=1, say=lambda text: None)
    cluster.prepare_workdir()
    cluster.nodes = plan_nodes(cluster.workdir, 0, 1)
    os.makedirs(os.path.dirname(cluster.nodes[0].config))
    for path in (cluster.nodes[0].config, cluster.state_path):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("old")
        os.chmod(path, 0o644)
    cluster.write_configs(LOGINS)
    cluster.save_state()
    for path in (cluster.nodes[0].config, cluster.state_path):
        assert _mode(path) == 0o600
        with open(path, encoding="utf-8") as handle:
            assert handle.read() != "old"


def test_a_restart_keeps_each_nodes_ports_while_they_are_free(tmp_path) -> None:
    """Planned again with the last run's nodes, every node gets its old ports back (the
    registry in the kept Redis stays right); a port now taken is replaced by a free one."""
    import socket

    first = plan_nodes(str(tmp_path), 1, 2)
    saved = [{"name": n.name, "url": n.url, "https_url": n.https_url, "ping_port": n.ping_port}
             for n in first]
    again = plan_nodes(str(tmp_path), 1, 2, saved)
    assert [(n.port, n.ping_port, n.tls_port) for n in again] == \
        [(n.port, n.ping_port, n.tls_port) for n in first]
    store = first[-1]
    with socket.socket() as taken:
        taken.bind((store.host, store.port))
        replanned = plan_nodes(str(tmp_path), 1, 2, saved)[-1]
    assert replanned.port not in (0, store.port) and replanned.ping_port == store.ping_port


def test_several_masters_come_first_and_every_node_lists_them_all(tmp_path) -> None:
    """`masters=2` plans master and master2 on their own loopback hosts before the other
    nodes, and every node's config names both masters."""
    import tomllib

    from stretchfs.devcluster.cluster import render_config

    nodes = plan_nodes(str(tmp_path), 1, 1, masters=2)
    assert [(n.name, n.role) for n in nodes] == [
        ("master", "master"), ("master2", "master"), ("prism1", "prism"), ("store1", "store")]
    assert len({n.host for n in nodes}) == 4
    urls = [n.url for n in nodes[:2]]
    for node in nodes:
        config = tomllib.loads(render_config(node, urls, "redis://127.0.0.1:1/0", "k" * 40))
        assert config["cluster"]["master_urls"] == urls
