"""The ballot box against a real redis-server and against the fake."""

from __future__ import annotations

import time

import pytest
import pytest_twisted

from stretchfs.pingnet.ballot import BallotBox, read_tallies
from stretchfs.redisstore import parse_redis_url
from tests.fakes import FakeRedisStore


class WallClock:
    """Real time for the real server (its expiry runs on real time too)."""

    def seconds(self) -> float:
        return time.time()


@pytest.fixture(params=["real", "fake"])
def redis(request, redis_url, redis_server, key_prefix):
    """A RedisStore: txredisapi on a real server logged in as the prisms' and stores'
    least-privilege ACL user, or the in-memory fake."""
    if request.param == "fake":
        yield FakeRedisStore(WallClock())
        return
    from twisted.internet import reactor

    from stretchfs.devcluster.redisacl import NODE_USER
    from stretchfs.redisstore import connect_redis

    url = redis_server.login_url(NODE_USER, key_prefix)
    real = connect_redis(parse_redis_url(url), reactor, timeout=5.0)
    yield real
    pytest_twisted.blockon(real.close())


@pytest_twisted.ensureDeferred
async def test_votes_are_cast_read_and_withdrawn(redis, key_prefix) -> None:
    """A cast vote is read back in one round trip and gone once withdrawn."""
    clock = WallClock()
    box_a = BallotBox(redis, key_prefix, "a", 10.0, refresh_after=2.5, now=clock.seconds)
    box_b = BallotBox(redis, key_prefix, "b", 10.0, refresh_after=2.5, now=clock.seconds)
    await box_a.want({"c"})
    await box_b.want({"c", "a"})
    votes, _records = await read_tallies(redis, key_prefix, ["a", "b", "c"], clock.seconds())
    assert votes == {"a": {"b"}, "b": set(), "c": {"a", "b"}}
    await box_b.want({"a"})
    votes, _records = await read_tallies(redis, key_prefix, ["a", "c"], clock.seconds())
    assert votes == {"a": {"b"}, "c": {"a"}}


@pytest_twisted.ensureDeferred
async def test_expired_votes_do_not_count(redis, key_prefix) -> None:
    """A vote whose expiry has passed is not returned by the tally read."""
    now = time.time()
    await redis.execute("ZADD", key_prefix + "ping:votes:c", now - 1.0, "dead-voter")
    await redis.execute("ZADD", key_prefix + "ping:votes:c", now + 10.0, "live-voter")
    votes, _records = await read_tallies(redis, key_prefix, ["c"], now)
    assert votes == {"c": {"live-voter"}}


@pytest_twisted.ensureDeferred
async def test_verdict_records_round_trip(redis, key_prefix) -> None:
    """A recorded verdict change is read back with the tallies."""
    box = BallotBox(redis, key_prefix, "a", 10.0, refresh_after=2.5, now=time.time)
    await box.record_verdict("c", False, 123.0)
    _votes, records = await read_tallies(redis, key_prefix, ["c"], time.time())
    assert records == {"c": {"available": False, "since": 123.0, "by": "a"}}



def test_withdraw_all_waits_for_a_write_in_flight() -> None:
    """Shutting down while a vote is being written: withdraw_all's Deferred fires only
    once the removal itself is written, so the process does not close Redis first and
    leave its votes standing until they expire."""
    from twisted.internet.defer import Deferred

    class HeldRedis:
        def __init__(self) -> None:
            self.writes: list[tuple[list, Deferred]] = []

        def pipeline(self, commands):
            held: Deferred = Deferred()
            self.writes.append((commands, held))
            return held

    redis = HeldRedis()
    box = BallotBox(redis, "p:", "a", 10.0, refresh_after=2.5, now=lambda: 100.0)
    box.want(["b"])
    assert len(redis.writes) == 1
    withdrawn = box.withdraw_all()
    assert withdrawn is not None and not withdrawn.called
    redis.writes[0][1].callback([0, 1, 1])  # the vote is in
    assert len(redis.writes) == 2 and redis.writes[1][0][0][0] == "ZREM"
    assert not withdrawn.called
    redis.writes[1][1].callback([1])
    assert withdrawn.called
