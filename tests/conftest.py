"""Shared fixtures: a real redis-server, temp configs, a deterministic clock.

Nothing here imports klein or txredisapi at import time: both install the
global reactor, which must be left to pytest-twisted.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from tests.helpers import RedisServer, start_redis_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server on a free loopback port for the whole run."""
    server = start_redis_server(str(tmp_path_factory.mktemp("redis")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of a freshly flushed database of the session's redis-server."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses."""
    return "t{}:".format(uuid.uuid4().hex[:12])


@pytest.fixture
def clock():
    """A deterministic clock (twisted.internet.task.Clock) at a fixed epoch."""
    from twisted.internet.task import Clock

    fake = Clock()
    fake.advance(1_700_000_000)
    return fake


@pytest.fixture
def repo_root() -> str:
    """Absolute path of the repository checkout."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
