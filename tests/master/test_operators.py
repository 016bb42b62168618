"""Operator views and failure modes: dashboard, metrics, Redis unreachable."""

from __future__ import annotations

import pytest_twisted

from stretchfs.master.dashboard import PeerColumn


@pytest_twisted.ensureDeferred
async def test_dashboard_lists_peers_counts_and_cursors(master) -> None:
    """GET / (no key) is an HTML page with peers, flags, counts and feed cursors."""
    await master.call("POST", "/peers/register", {"name": "store1", "role": "store",
                                                   "host": "127.0.0.1", "port": 8200})
    await master.call("POST", "/peers/store1/update", {"writable": False})
    published = await master.call("POST", "/inventory/publish", {"store": "store1", "changes": [
        {"op": "add", "hash": "a" * 40, "ext": "mp4", "size": 1}]})
    master.api.peer_columns.append(PeerColumn("verdict", lambda peer: "<script>x</script>"))
    reply = await master.call("GET", "/", key=None)
    assert reply.code == 200
    assert reply.headers.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]
    page = reply.body.decode()
    assert "store1" in page and 'class="no">no<' in page
    assert published.json["cursor"] in page
    assert "<script>" not in page and "&lt;script&gt;" in page


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
async def test_unreachable_redis_answers_503(master_factory) -> None:
    """With the cluster Redis unreachable, writes and reads answer 503 and the dashboard says so."""
    from stretchfs.devcluster.ports import free_port

    master = await master_factory(url="redis://127.0.0.1:{}/0".format(free_port()),
                                  redis_timeout=0.5)
    for method, path, body in (
            ("POST", "/users", {"username": "x"}),
            ("POST", "/inventory/publish", {"store": "s1", "changes": []}),
            ("POST", "/purchases", {"hash": "c" * 40, "ext": "mp4"}),
            ("GET", "/inventory/snapshot", None),
            ("GET", "/inventory/feed?after=0-0", None)):
        reply = await master.call(method, path, body)
        assert reply.code == 503, path
        assert "Redis" in reply.json["error"]
    page = await master.call("GET", "/", key=None)
    assert page.code == 503 and b"cluster Redis unavailable" in page.body
