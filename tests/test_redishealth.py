"""RedisWatch reports the cluster Redis in the readiness, logging only changes."""

from __future__ import annotations

from twisted.logger import capturedLogs

from stretchfs.health import Readiness
from stretchfs.redishealth import RedisWatch
from tests.fakes import FakeRedisStore


def test_readiness_follows_redis(clock) -> None:
    """Readiness is blocked while Redis is away and clears once it answers again."""
    redis = FakeRedisStore(clock)
    readiness = Readiness()
    watch = RedisWatch(redis, clock, readiness, interval=2.0)
    watch.startService()
    assert readiness.ready
    redis.down = True
    with capturedLogs() as events:
        for _ in range(5):
            clock.advance(2.0)
    assert not readiness.ready
    assert readiness.reasons == ["cluster Redis unreachable"]
    assert [e.get("event") for e in events if e.get("event")] == ["redis_down"]
    redis.down = False
    clock.advance(2.0)
    assert readiness.ready
    watch.stopService()
    assert clock.getDelayedCalls() == []
