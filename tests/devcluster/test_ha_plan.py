"""`dev up --ha`'s plan: node configs behind Sentinel, Sentinel and replica settings, and
which Redis processes `dev down` stops."""

from __future__ import annotations

from stretchfs.config import parse_config
from stretchfs.devcluster.cluster import NodeSpec, managed_redis, render_config
from stretchfs.devcluster.redisacl import REPLICA_USER, SENTINEL_USER
from stretchfs.devcluster.sentinel import SERVICE, replica_lines, sentinel_lines
from tests.helpers import CLUSTER_KEY

PASSWORDS = {SENTINEL_USER: "s-pw", REPLICA_USER: "r-pw"}


def test_node_config_behind_sentinels_loads_with_one_replica_ack() -> None:
    """A generated config lists the Sentinels and the service; it loads, and its writes wait
    for one replica."""
    node = NodeSpec(name="master", role="master", host="127.0.0.1", port=1, ping_port=0,
                    zone="a")
    text = render_config(node, ["http://127.0.0.1:1"], "redis://stretchfs-master@127.0.0.1:2/0",
                         CLUSTER_KEY, "pw", sentinels=["127.0.0.1:3", "127.0.0.1:4"])
    config = parse_config("master", text, "master.toml", {})
    assert config.redis.sentinels == ("127.0.0.1:3", "127.0.0.1:4")
    assert config.redis.service == SERVICE and config.redis.replica_acks == 1


def test_node_config_without_sentinels_is_unchanged() -> None:
    """Without --ha a node config names no Sentinel and acknowledges writes at once."""
    node = NodeSpec(name="store1", role="store", host="127.0.0.3", port=1, ping_port=2,
                    zone="a", root="/tmp/x")
    text = render_config(node, ["http://127.0.0.1:1"], "redis://127.0.0.1:2/0", CLUSTER_KEY)
    assert "sentinels" not in text
    assert parse_config("store", text, "store1.toml", {}).redis.replica_acks == 0


def test_sentinels_log_in_as_their_own_user_with_dev_timings() -> None:
    """Each Sentinel watches the service with quorum 2, a 1 s down-after and its own user."""
    lines = sentinel_lines(6379, PASSWORDS)
    assert "sentinel monitor {} 127.0.0.1 6379 2".format(SERVICE) in lines
    assert "sentinel down-after-milliseconds {} 1000".format(SERVICE) in lines
    assert "sentinel auth-user {} {}".format(SERVICE, SENTINEL_USER) in lines
    assert "sentinel auth-pass {} s-pw".format(SERVICE) in lines


def test_every_server_replicates_as_the_replica_user() -> None:
    """Replicas follow the primary; every server (a demoted primary too) logs in to its
    primary as the replica user."""
    assert "replicaof 127.0.0.1 6379" in replica_lines(PASSWORDS, 6379)
    primary = replica_lines(PASSWORDS, None)
    assert "masteruser {}".format(REPLICA_USER) in primary and "masterauth r-pw" in primary
    assert not any(line.startswith("replicaof") for line in primary)


def test_dev_down_stops_sentinels_first_then_every_server() -> None:
    """An --ha cluster.json names six processes to stop, Sentinels first; a plain one, one."""
    ha = {"redis": {"managed": True, "servers": [{"pid": 1, "port": 11}, {"pid": 2, "port": 12}],
                    "sentinel_processes": [{"pid": 3, "port": 13}]}}
    assert [p["pid"] for p in managed_redis(ha)] == [3, 1, 2]
    plain = {"redis": {"managed": True, "pid": 5, "port": 15}}
    assert [p["pid"] for p in managed_redis(plain)] == [5]
    assert managed_redis({"redis": {"managed": False, "pid": 5}}) == []
