"""`dev up --nginx --prism-workers N`: what the generated configs and cluster.json say."""

from __future__ import annotations

import json

from stretchfs.config import PrismConfig, StoreConfig, parse_config
from stretchfs.devcluster.cluster import LocalCluster, plan_nodes, render_config
from stretchfs.devcluster.redisacl import MASTER_USER, NODE_USER
from tests.helpers import CLUSTER_KEY

LOGINS = {MASTER_USER: ("redis://127.0.0.1:1/0", "pw-master"),
          NODE_USER: ("redis://127.0.0.1:1/0", "pw-node")}


def test_stores_register_their_nginx_and_prisms_get_their_workers(tmp_path) -> None:
    """With nginx, each store's public_url is its own nginx on its loopback host; every
    prism has `[http] workers`; cluster.json lists the (not yet started) nginx."""
    cluster = LocalCluster(str(tmp_path), prisms=1, stores=2, say=lambda text: None)
    cluster.nginx, cluster.prism_workers = True, 3
    cluster.cluster_key = CLUSTER_KEY
    cluster.prepare_workdir()
    cluster.nodes = plan_nodes(cluster.workdir, 1, 2)
    cluster._plan_fronts()
    cluster.write_configs(LOGINS)
    configs = {}
    for node in cluster.nodes:
        with open(node.config, encoding="utf-8") as handle:
            configs[node.name] = parse_config(node.role, handle.read(), node.config, {})
    prism = configs["prism1"]
    assert isinstance(prism, PrismConfig) and prism.http.workers == 3
    fronts = cluster.describe()["nginx"]
    assert [f["name"] for f in fronts] == ["store1", "store2"]
    for front, name in zip(fronts, ("store1", "store2")):
        store = configs[name]
        assert isinstance(store, StoreConfig)
        assert store.http.public_url == front["url"]
        assert front["url"].startswith("http://{}:".format(store.node.host))
        assert front["pid"] is None and front["prefix"].startswith(cluster.workdir)
    assert json.dumps(cluster.describe())  # cluster.json can hold it


def test_without_the_flags_configs_are_as_before(tmp_path) -> None:
    """No nginx: no public_url; one worker: no workers key."""
    nodes = plan_nodes(str(tmp_path), 1, 1)
    for node in nodes:
        text = render_config(node, [nodes[0].url], "redis://127.0.0.1:1/0", CLUSTER_KEY)
        assert "public_url" not in text and "workers" not in text
