"""Fixtures for master tests: the real API on a loopback port over a real Redis.

The master's clock is a `task.Clock` (expiry, sessions, long-poll timeouts);
Redis and HTTP run on the real reactor.  bcrypt runs inline at cost 4.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted

from tests.helpers import CLUSTER_KEY, load_test_config


@dataclass
class Reply:
    """A decoded HTTP answer."""

    code: int
    body: bytes
    headers: Any

    @property
    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


class MasterHarness:
    """A running MasterAPI with a treq client that speaks to it."""

    def __init__(self, api: Any, port: Any, http: Any, base: str, redis: Any) -> None:
        self.api = api
        self.port = port
        self.http = http
        self.base = base
        self.redis = redis
        self.clock = api.clock

    async def call(self, method: str, path: str, body: Any = None, key: str | None = CLUSTER_KEY,
                   raw: bytes | None = None, headers: dict[bytes, list[bytes]] | None = None
                   ) -> Reply:
        """Send a request; returns code, body and headers."""
        import treq

        sent = dict(headers or {})
        if key is not None:
            sent[b"Authorization"] = [b"Bearer " + key.encode()]
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent[b"Content-Type"] = [b"application/json"]
        response = await self.http.request(method, self.base + path, data=data, headers=sent,
                                           allow_redirects=False)
        content = await treq.content(response)
        return Reply(response.code, content, response.headers)

    def client(self) -> Any:
        """A MasterClient pointed at this master."""
        from stretchfs.wire.master import MasterClient

        return MasterClient(self.http, self.base, CLUSTER_KEY, timeout=10.0, clock=self.clock)


def build_master(redis_url: str, clock: Any, extra: str = "",
                 redis_timeout: float = 5.0) -> tuple[Any, Any]:
    """A MasterAPI (bcrypt cost 4, inline) and its real Redis store."""
    from twisted.internet import reactor

    from stretchfs.health import Readiness
    from stretchfs.master.api import MasterAPI
    from stretchfs.metrics import new_registry
    from stretchfs.redisstore import connect_redis, parse_redis_url

    config = load_test_config("master", redis_url=redis_url,
                              extra="[master]\nbcrypt_rounds = 4\n" + extra)
    redis = connect_redis(parse_redis_url(redis_url), reactor, timeout=redis_timeout)
    api = MasterAPI(config, readiness=Readiness(), metrics_registry=new_registry(False),
                    redis=redis, clock=clock)
    return api, redis


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
    """Builds running masters (config `extra` appended to [master]); all are torn down."""
    from treq.client import HTTPClient
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.web.client import Agent, HTTPConnectionPool
    from twisted.web.server import Site

    made: list[MasterHarness] = []

    async def make(extra: str = "", url: str = "", redis_timeout: float = 5.0) -> MasterHarness:
        api, redis = build_master(url or redis_url, clock, extra, redis_timeout)
        site = Site(api.app.resource())
        site.noisy = False
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        harness = MasterHarness(api, port, http,
                                "http://127.0.0.1:{}".format(port.getHost().port), redis)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        pytest_twisted.blockon(harness.port.stopListening())
        pytest_twisted.blockon(harness.redis.close())


@pytest.fixture
def master(master_factory):
    """One running master with default settings."""
    from twisted.internet.defer import ensureDeferred

    return pytest_twisted.blockon(ensureDeferred(master_factory()))
