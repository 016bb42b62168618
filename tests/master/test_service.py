"""The master service: assembled from injected parts, leaves no timers when stopped."""

from __future__ import annotations

import pytest_twisted
from prometheus_client import generate_latest
from twisted.internet.defer import maybeDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from stretchfs.master.service import build_master_service
from stretchfs.wire.http import make_http_client
from tests.fakes import FakeRedisStore
from tests.helpers import load_test_config


def test_service_starts_listens_and_stops_without_timers() -> None:
    """Starting listens and schedules the prune job; stopping leaves no delayed calls."""
    reactor = MemoryReactorClock()
    redis = FakeRedisStore(reactor)
    redis.down = True  # the first prune fails and is retried later
    config = load_test_config("master")
    service = build_master_service(config, reactor=reactor, redis=redis,
                                   run_blocking=maybeDeferred, http=make_http_client(reactor))
    service.startService()
    assert len(reactor.tcpServers) == 1
    assert reactor.getDelayedCalls()
    assert not service.api.readiness.ready  # Redis is down
    stopped = service.stopService()
    assert stopped.called
    assert reactor.getDelayedCalls() == []


def test_with_http_the_master_runs_the_repair_planner() -> None:
    """A master with an HTTP client runs the repair planner: its metrics are exported, a
    Redis outage is logged once (not every round), and stopping leaves no timers."""
    reactor = MemoryReactorClock()
    redis = FakeRedisStore(reactor)
    redis.down = True
    service = build_master_service(load_test_config("master"), reactor=reactor, redis=redis,
                                   http=object(),
                                   run_blocking=lambda f, *a: maybeDeferred(f, *a))
    with capturedLogs() as events:
        service.startService()
        for _ in range(3):
            reactor.advance(service.api.config.repair.interval)
    assert b"stretchfs_repair_leader 0.0" in generate_latest(service.api.metrics_registry)
    assert [e.get("event") for e in events if e.get("event") == "repair_round"] == [
        "repair_round"]
    assert service.stopService().called
    assert reactor.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_feed_followers_to_catch_up(redis_url) -> None:
    """Stopping the master holds the process (and its Redis) until a following prism has
    asked past the purchase acknowledged before the stop."""
    from twisted.internet import reactor as real_reactor

    from stretchfs.master.api import DRAIN_CHECK_SECONDS, PURCHASE_FEED
    from stretchfs.redisstore import connect_redis, parse_redis_url
    from tests.master.harness import TrackedRedis

    reactor = MemoryReactorClock()
    redis = TrackedRedis(connect_redis(parse_redis_url(redis_url), real_reactor, timeout=5.0))
    service = build_master_service(load_test_config("master", redis_url=redis_url),
                                   reactor=reactor, redis=redis,
                                   run_blocking=maybeDeferred, http=make_http_client(reactor))
    service.startService()
    api = service.api
    api.followers.reading(PURCHASE_FEED, "prism2", "0-0")
    api.followers.answered(PURCHASE_FEED, "prism2")
    await api.purchases.create({"hash": "a" * 40, "ext": "mp4"})
    stopped = service.stopService()
    for _ in range(3):
        await redis.idle()
        reactor.advance(DRAIN_CHECK_SECONDS)
    assert not stopped.called and len(reactor.tcpServers) == 1
    assert not api.readiness.ready
    api.followers.reading(PURCHASE_FEED, "prism2", await api.purchases.cursor())
    await redis.idle()
    reactor.advance(DRAIN_CHECK_SECONDS)
    await redis.idle()
    assert stopped.called
    assert reactor.getDelayedCalls() == []
