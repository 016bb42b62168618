"""The ballot box against a real redis-server and against the fake."""

from __future__ import annotations

import time

import pytest
import pytest_twisted

from stretchfs.pingnet.ballot import BallotBox, read_down, read_tallies, read_version
from stretchfs.redisstore import parse_redis_url
from tests.fakes import FakeRedisStore
from tests.pingnet import tallymodel


class WallClock:
    """Real time for the real server (its expiry runs on real time too)."""

    def seconds(self) -> float:
        return time.time()


@pytest.fixture(params=["real", "fake"])
def redis(request, redis_url, redis_server, key_prefix):
    """A RedisStore: txredisapi on a real server logged in as the prisms' and stores'
    least-privilege ACL user, or the in-memory fake."""
    if request.param == "fake":
        yield tallymodel.install(FakeRedisStore(WallClock()))
        return
    from twisted.internet import reactor

    from stretchfs.devcluster.redisacl import NODE_USER
    from stretchfs.redisstore import connect_redis

    url = redis_server.login_url(NODE_USER, key_prefix)
    real = connect_redis(parse_redis_url(url), reactor, timeout=5.0)
    yield real
    pytest_twisted.blockon(real.close())


def _box(redis, prefix: str, name: str, electorates: dict[str, list[list[str]]],
         now=None) -> BallotBox:
    return BallotBox(redis, prefix, name, 10.0, refresh_after=2.5,
                     now=now or WallClock().seconds,
                     electorates=lambda target: electorates.get(target, []))


@pytest_twisted.ensureDeferred
async def test_a_majority_of_the_observers_puts_a_peer_in_the_down_set(redis, key_prefix) -> None:
    """The vote that makes a strict majority of the target's observers adds it to the down
    hash and bumps the version; the withdrawal that breaks it removes it and bumps again."""
    electorates = {"d": [["a", "b", "c"]]}
    box_a, box_b = _box(redis, key_prefix, "a", electorates), _box(redis, key_prefix, "b",
                                                                  electorates)
    await box_a.want({"d"})
    assert await read_down(redis, key_prefix) == (0, {})
    await box_b.want({"d"})
    version, down = await read_down(redis, key_prefix)
    assert version == 1 and set(down) == {"d"}
    assert down["d"]["voters"] == ["a", "b"] and down["d"]["needed"] == 2
    assert down["d"]["by"] == "b"
    assert await read_version(redis, key_prefix) == 1
    await box_a.want(set())
    assert await read_down(redis, key_prefix) == (2, {})
    votes, _records = await read_tallies(redis, key_prefix, ["d"], time.time())
    assert votes == {"d": {"b"}}


@pytest_twisted.ensureDeferred
async def test_only_live_votes_of_observers_not_held_down_count(redis, key_prefix) -> None:
    """Votes of non-observers, of observers held down and expired votes are not counted."""
    now = time.time()
    electorates = {"d": [["a", "b", "c"]], "c": [["x", "y", "z"]]}
    for voter in ("x", "y"):
        await _box(redis, key_prefix, voter, electorates).want({"c"})
    assert set((await read_down(redis, key_prefix))[1]) == {"c"}
    await redis.execute("ZADD", key_prefix + "ping:votes:d", now - 1.0, "a")
    await _box(redis, key_prefix, "stranger", electorates).want({"d"})
    await _box(redis, key_prefix, "c", electorates).want({"d"})
    assert set((await read_down(redis, key_prefix))[1]) == {"c"}
    await _box(redis, key_prefix, "b", electorates).want({"d"})
    assert set((await read_down(redis, key_prefix))[1]) == {"c"}  # 1 of a, b (c is down)
    await _box(redis, key_prefix, "a", electorates).want({"d"})
    _version, down = await read_down(redis, key_prefix)
    assert set(down) == {"c", "d"} and down["d"]["voters"] == ["a", "b"]
    assert down["d"]["needed"] == 2


@pytest_twisted.ensureDeferred
async def test_a_majority_of_either_epochs_observers_suffices(redis, key_prefix) -> None:
    """Near an epoch boundary a majority of the old or of the new observers puts a peer down."""
    electorates = {"d": [["a", "b", "c"], ["e", "f", "g"]]}
    await _box(redis, key_prefix, "a", electorates).want({"d"})
    await _box(redis, key_prefix, "e", electorates).want({"d"})
    assert (await read_down(redis, key_prefix))[1] == {}
    await _box(redis, key_prefix, "f", electorates).want({"d"})
    assert set((await read_down(redis, key_prefix))[1]) == {"d"}


@pytest_twisted.ensureDeferred
async def test_a_recount_lifts_a_verdict_whose_votes_expired(redis, key_prefix) -> None:
    """A watched peer held down by votes that have since expired is readmitted by the
    watcher's periodic recount."""
    now = [time.time()]
    electorates = {"d": [["a", "b", "c"]]}
    for voter in ("a", "b"):
        await _box(redis, key_prefix, voter, electorates, now=lambda: now[0]).want({"d"})
    assert set((await read_down(redis, key_prefix))[1]) == {"d"}
    watcher = _box(redis, key_prefix, "c", electorates, now=lambda: now[0] + 11.0)
    watcher.watch({"d"})
    await watcher.sync()
    assert (await read_down(redis, key_prefix))[1] == {}


@pytest_twisted.ensureDeferred
async def test_verdict_records_round_trip(redis, key_prefix) -> None:
    """A recorded verdict change is read back with the tallies."""
    box = _box(redis, key_prefix, "a", {})
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
    box = _box(redis, "p:", "a", {"b": [["a"]]}, now=lambda: 100.0)
    box.want(["b"])
    assert len(redis.writes) == 1
    withdrawn = box.withdraw_all()
    assert withdrawn is not None and not withdrawn.called
    redis.writes[0][1].callback([0, 1, 1])  # the vote is in
    assert len(redis.writes) == 2 and redis.writes[1][0][0][8] == "withdraw"
    assert not withdrawn.called
    redis.writes[1][1].callback([1])
    assert withdrawn.called
