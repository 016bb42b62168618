"""The ping-net column of the master's dashboard."""

from __future__ import annotations

from typing import Any

from stretchfs.master.dashboard import render_dashboard
from stretchfs.pingnet.dashboard import ClusterVerdicts
from stretchfs.pingnet.keys import votes_key
from tests.fakes import FakeRedisStore


def test_dashboard_column_shows_verdicts_and_voters(clock) -> None:
    """A peer voted down by a majority shows DOWN with its voters; the others show available."""
    redis = FakeRedisStore(clock)
    for voter in ("a", "b"):
        redis.execute("ZADD", votes_key("sfs:", "c"), clock.seconds() + 10, voter)
    peers = [{"name": n, "role": "store", "active": True, "writable": True, "url": "http://x",
              "site": "local", "zone": "a", "registered": 0.0, "updated": 0.0}
             for n in ("a", "b", "c")]

    async def list_peers() -> list[dict[str, Any]]:
        return peers

    verdicts = ClusterVerdicts(redis, "sfs:", list_peers, clock)
    verdicts.startService()
    assert verdicts.cell(peers[2]).startswith("DOWN (votes 2/2: a, b)")
    assert verdicts.cell(peers[0]) == "available (votes 0/2)"
    page = render_dashboard({"node": "master", "peers": peers}, [verdicts.column()], [])
    assert b"ping net" in page and b"DOWN" in page
    redis.down = True
    clock.advance(2.0)
    assert verdicts.cell(peers[2]).startswith("DOWN")  # the last good view stays
    verdicts.stopService()
    assert clock.getDelayedCalls() == []
