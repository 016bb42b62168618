"""The ping net's verdicts on the master's dashboard."""

from __future__ import annotations

from typing import Any

from stretchfs.master.pingview import ClusterVerdicts
from stretchfs.pingnet.keys import votes_key
from tests.fakes import FakeRedisStore


def test_dashboard_shows_verdicts_and_voters(clock) -> None:
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
    assert verdicts.summary("c") == {"available": False, "votes": "2/2",
                                     "voters": ["a", "b"], "since": None}
    assert verdicts.summary("a") == {"available": True, "votes": "0/2", "voters": [],
                                     "since": None}
    assert verdicts.summary("unknown") is None
    redis.down = True
    clock.advance(2.0)
    assert verdicts.summary("c")["available"] is False  # the last good view stays
    verdicts.stopService()
    assert clock.getDelayedCalls() == []
