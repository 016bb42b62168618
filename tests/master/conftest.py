"""Fixtures for master tests: the real API in memory (tests/master/harness.py) over a
real Redis, with a `task.Clock` for everything the master times."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.master.harness import MasterHarness, build_master


@pytest.fixture
def redis_url(redis_server):
    """A flushed database, reached as the master's least-privilege ACL user: every
    master test proves the master needs no more rights than etc/redis.conf gives it."""
    from stretchfs.config import RedisSettings
    from stretchfs.devcluster.redisacl import MASTER_USER

    redis_server.flush()
    return redis_server.login_url(MASTER_USER, RedisSettings().prefix)


@pytest.fixture
def master_factory(redis_url, clock):
    """Builds masters (`build_master` arguments, on this test's database and clock);
    their Redis pools are closed afterwards."""
    made: list[MasterHarness] = []

    def make(extra: str = "", url: str = "", **kwargs) -> MasterHarness:
        harness = build_master(url or redis_url, clock, extra, **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        pytest_twisted.blockon(harness.redis.close())


@pytest.fixture
def master(master_factory) -> MasterHarness:
    """One master with default settings."""
    return master_factory()
