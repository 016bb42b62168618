"""A dev cluster runs with least-privilege Redis logins: the master's and the nodes' own."""

from __future__ import annotations

import os
import signal
import time

from stretchfs.config import load_config
from stretchfs.devcluster.cluster import LocalCluster
from stretchfs.devcluster.process import http_get_json
from stretchfs.devcluster.redis_server import redis_command
from stretchfs.devcluster.redisacl import MASTER_USER, NODE_USER
from stretchfs.redisstore import RedisAddress, parse_redis_url


def _login(node: dict) -> RedisAddress:
    """The Redis login a node's generated config gives it."""
    redis = load_config(node["role"], node["config"], environ={}).redis
    address = parse_redis_url(redis.url)
    return RedisAddress(host=address.host, port=address.port, username=address.username,
                        password=redis.password)


def _status(node: dict, key: str) -> dict:
    status, body = http_get_json(node["url"] + "/pingnet/status", timeout=5.0, key=key)
    assert status == 200
    return body


def _votes_against(target: str, nodes: list[dict], key: str, timeout: float) -> dict:
    """Wait until every node in `nodes` sees `target` down by a vote read from Redis."""
    deadline = time.monotonic() + timeout
    while True:
        views = {n["name"]: _status(n, key) for n in nodes}
        rows = {name: {p["name"]: p for p in view["peers"]}[target]
                for name, view in views.items()}
        if all(not row["available"] and len(row["voters"]) >= 2 for row in rows.values()):
            return views
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)


def test_dev_cluster_nodes_log_in_with_only_their_rights(tmp_path, monkeypatch) -> None:
    """In `stretchfs dev up`'s cluster the master and the nodes each have their own Redis
    login: the cluster meshes, creates its first user and votes a frozen store down
    through Redis, yet a store's login is refused that user's record."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    cluster = LocalCluster(str(tmp_path / "cluster"), prisms=1, stores=2, say=lambda text: None)
    try:
        state = cluster.up(detach=True, timeout=90)
        assert state["redis"]["acl"] and state["user"]
        nodes = {node["name"]: node for node in state["nodes"]}
        master, store = _login(nodes["master"]), _login(nodes["store1"])
        assert (master.username, store.username) == (MASTER_USER, NODE_USER)
        record = "sfs:user:" + state["user"]["username"]
        assert redis_command(master, "HGET", record, "active") == b"$1"
        assert redis_command(store, "HGET", record, "active").startswith(b"-NOPERM")
        assert redis_command(store, "DEL", record).startswith(b"-NOPERM")
        assert redis_command(RedisAddress(port=master.port), "FLUSHALL").startswith(b"-NOAUTH")
        os.kill(nodes["store2"]["pid"], signal.SIGSTOP)
        try:
            views = _votes_against("store2", [nodes["prism1"], nodes["store1"]],
                                   state["cluster_key"], timeout=30.0)
        finally:
            os.kill(nodes["store2"]["pid"], signal.SIGCONT)
        assert {view["mode"] for view in views.values()} == {"ballot"}
    finally:
        cluster.down()
