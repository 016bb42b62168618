"""`GET /pingnet/status`: a node's own view and the master's cluster view."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from klein import Klein

from stretchfs.master.pingview import cluster_view
from stretchfs.pingnet.ballot import tally_command
from stretchfs.pingnet.keys import votes_key
from stretchfs.pingnet.status import add_pingnet_routes
from stretchfs.web.errormap import install_error_handlers
from tests.fakes import FakeRedisStore
from tests.helpers import CLUSTER_KEY
from tests.pingnet import tallymodel
from tests.pingnet.simnet import SimCluster


class NodeAPI:
    """A minimal API carrying the ping-net routes."""

    app = Klein()
    install_error_handlers(app)
    add_pingnet_routes(app)

    cluster_key = CLUSTER_KEY

    def __init__(self, pingnet: Any) -> None:
        self.pingnet = pingnet


def _get(api: NodeAPI, path: str, key: str = CLUSTER_KEY) -> tuple[int, Any]:
    import json

    from treq.testing import StubTreq

    stub = StubTreq(api.app.resource())
    headers = {"Authorization": "Bearer " + key} if key else {}
    response = stub.get("http://node" + path, headers=headers)
    stub.flush()
    result: list[Any] = []
    response.addCallback(lambda r: stub.content(r).addCallback(lambda b: result.append(
        (r.code, json.loads(b)))))
    stub.flush()
    return result[0]


def test_node_status_lists_peers_with_verdicts(clock) -> None:
    """A node's status shows each peer's availability, votes and its own vote."""
    sim = SimCluster(clock, 3)
    sim.start()
    sim.freeze("n3")
    sim.run(3.0)
    code, body = _get(NodeAPI(sim.nodes["n1"]), "/pingnet/status")
    sim.stop()
    assert code == 200 and body["node"] == "n1"
    row = next(p for p in body["peers"] if p["name"] == "n3")
    assert row["available"] is False and row["my_vote"] and row["voters"] == ["n1", "n2"]


def test_node_status_needs_the_cluster_key() -> None:
    """A node's own view is internal: without the cluster key it answers 401."""
    assert _get(NodeAPI(None), "/pingnet/status", key="")[0] == 401
    assert _get(NodeAPI(None), "/pingnet/status", key="wrong-key-0123456789")[0] == 401


def test_status_without_ping_net_is_503() -> None:
    """A node with the ping net disabled answers 503 with an error body."""
    code, body = _get(NodeAPI(None), "/pingnet/status")
    assert code == 503 and "disabled" in body["error"]


@pytest_twisted.ensureDeferred
async def test_cluster_view_counts_votes_per_peer(clock) -> None:
    """The master's view lists the voters and the majority verdict of each registered peer."""
    redis = FakeRedisStore(clock)
    now = clock.seconds()
    for voter in ("a", "b"):
        redis.execute("ZADD", votes_key("sfs:", "c"), now + 10, voter)
    redis.execute("ZADD", votes_key("sfs:", "a"), now + 10, "c")

    async def registry() -> list[dict[str, Any]]:
        return [{"name": n, "role": "store", "active": True} for n in ("a", "b", "c", "d")]

    view = await cluster_view(redis, "sfs:", registry, now)
    rows = {r["name"]: r for r in view["peers"]}
    assert view["down"] == ["c"]
    assert rows["c"]["voters"] == ["a", "b"] and rows["c"]["needed"] == 2
    assert rows["a"]["available"] is True


@pytest_twisted.ensureDeferred
async def test_cluster_view_follows_the_observers_verdict_past_k_plus_one(clock) -> None:
    """Past K+1 nodes only a peer's K observers vote on it, so the votes are no majority
    of every active peer; the master (and its repair planner) still sees the peer down
    once its observers' tally script has put it in the down set."""
    redis = tallymodel.install(FakeRedisStore(clock))
    now = clock.seconds()
    names = ["s{:02}".format(i) for i in range(20)]
    observers = names[1:5]                      # K = 4 observers of s00
    for voter in observers[:3]:
        redis.execute(*tally_command("sfs:", "s00", voter, "cast", now, 10.0, [observers]))

    async def registry() -> list[dict[str, Any]]:
        return [{"name": n, "role": "store", "active": True} for n in names]

    view = await cluster_view(redis, "sfs:", registry, now)
    rows = {r["name"]: r for r in view["peers"]}
    assert view["down"] == ["s00"]
    assert rows["s00"]["available"] is False and rows["s00"]["needed"] == 3
    assert sorted(rows["s00"]["counted"]) == observers[:3]
