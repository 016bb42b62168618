"""The master service: assembled from injected parts, leaves no timers when stopped."""

from __future__ import annotations

from twisted.internet.defer import maybeDeferred
from twisted.internet.testing import MemoryReactorClock

from stretchfs.master.service import build_master_service
from tests.fakes import FakeRedisStore
from tests.helpers import load_test_config


def test_service_starts_listens_and_stops_without_timers() -> None:
    """Starting listens and schedules the prune job; stopping leaves no delayed calls."""
    reactor = MemoryReactorClock()
    redis = FakeRedisStore(reactor)
    redis.down = True  # the first prune fails and is retried later
    config = load_test_config("master")
    service = build_master_service(config, reactor=reactor, redis=redis,
                                   run_blocking=lambda f, *a: maybeDeferred(f, *a))
    service.startService()
    assert len(reactor.tcpServers) == 1
    assert reactor.getDelayedCalls()
    assert not service.api.readiness.ready  # Redis is down
    stopped = service.stopService()
    assert stopped.called
    assert reactor.getDelayedCalls() == []
