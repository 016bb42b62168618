"""Operator views and failure modes: dashboard, metrics, Redis unreachable."""

from __future__ import annotations

import pytest_twisted


@pytest_twisted.ensureDeferred
async def test_dashboard_state_lists_peers_counts_and_cursors(master) -> None:
    """The dashboard's state lists peers with their flags and rows, counts and feed cursors."""
    await master.call("POST", "/peers/register", {"name": "store1", "role": "store",
                                                   "host": "127.0.0.1", "port": 8200})
    await master.call("POST", "/peers/store1/update", {"writable": False})
    published = await master.call("POST", "/inventory/publish", {"store": "store1", "changes": [
        {"op": "add", "hash": "a" * 40, "ext": "mp4", "size": 1}]})
    reply = await master.call("GET", "/dashboard/state")
    assert reply.code == 200
    assert reply.headers.getRawHeaders(b"cache-control") == [b"no-store"]
    [node] = reply.json["nodes"]
    assert (node["name"], node["writable"], node["rows"]) == ("store1", False, 1)
    assert reply.json["cursors"]["inventory"] == published.json["cursor"]
    assert reply.json["counts"] == {"content": 1, "purchases": 0, "users": 0}


@pytest_twisted.ensureDeferred
async def test_metrics_count_requests_by_route_and_publish_rows(master) -> None:
    """/metrics counts requests by route and status, and published rows by result."""
    batch = {"store": "s1", "changes": [{"op": "add", "hash": "b" * 40, "ext": "jpg",
                                         "size": 2}]}
    await master.call("POST", "/inventory/publish", batch)
    await master.call("POST", "/inventory/publish", batch)
    await master.call("POST", "/inventory/publish", {"store": "s1"})
    text = (await master.call("GET", "/metrics", key=None)).body.decode()
    assert 'stretchfs_master_requests_total{code="200",route="inventory_publish"} 2.0' in text
    assert 'stretchfs_master_requests_total{code="400",route="inventory_publish"} 1.0' in text
    assert 'stretchfs_master_publish_rows_total{result="applied"} 1.0' in text
    assert 'stretchfs_master_publish_rows_total{result="unchanged"} 1.0' in text


@pytest_twisted.ensureDeferred
async def test_unreachable_redis_answers_503(master_factory, clock) -> None:
    """With the cluster Redis unreachable, writes, reads and the dashboard state answer 503
    once the Redis deadline has passed on the clock."""
    from twisted.internet.defer import ensureDeferred

    from stretchfs.devcluster.ports import free_port

    master = master_factory(url="redis://127.0.0.1:{}/0".format(free_port()),
                            redis_clock=clock, redis_timeout=0.5)
    for method, path, body in (
            ("POST", "/users", {"username": "x"}),
            ("POST", "/inventory/publish", {"store": "s1", "changes": []}),
            ("POST", "/purchases", {"hash": "c" * 40, "ext": "mp4"}),
            ("GET", "/inventory/snapshot", None),
            ("GET", "/inventory/feed?after=0-0", None),
            ("GET", "/dashboard/state", None)):
        answer = ensureDeferred(master.call(method, path, body))
        clock.advance(0.4)
        assert not answer.called, path
        clock.advance(0.1)
        reply = await answer
        assert reply.code == 503, path
        assert "Redis" in reply.json["error"]
