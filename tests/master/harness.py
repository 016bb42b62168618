"""The real MasterAPI over StubTreq, on a real Redis, with a `task.Clock`.

Nothing here sleeps.  Requests travel in memory (treq.testing.StubTreq); an
answer is delivered as soon as the master finishes it, which for most routes
is when a Redis reply arrives on the real reactor.  `settled()` waits until
the master has nothing left in flight (no Redis command outstanding, every
written byte delivered), so a test knows e.g. that a long-poll now waits on
the clock.  bcrypt runs inline at cost 4.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.web.resource import Resource

from tests.helpers import CLUSTER_KEY, load_test_config

BASE_URL = "http://master"


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


class TrackedRedis:
    """A RedisStore that counts its commands in flight, so `idle()` can say when the
    master has nothing left to hear from Redis.

    A reply is handed on before the command stops counting: whatever the caller
    sends next in reaction is counted first, so a chain of commands is one busy spell.
    """

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._in_flight = 0
        self._idle: list[Deferred[None]] = []

    @property
    def busy(self) -> bool:
        """A command is waiting for its reply."""
        return self._in_flight > 0

    def execute(self, *args: Any) -> Deferred[Any]:
        """Send one command."""
        return self._track(self._redis.execute(*args))

    def pipeline(self, commands: Sequence[Any]) -> Deferred[list[Any]]:
        """Send several commands in one round trip."""
        return self._track(self._redis.pipeline(commands))

    def execute_durable(self, *args: Any) -> Deferred[Any]:
        """Send one write acknowledged after replication."""
        return self._track(self._redis.execute_durable(*args))

    def close(self) -> Deferred[None]:
        """Disconnect."""
        return self._redis.close()

    def idle(self) -> Deferred[None]:
        """Fires once no command is in flight."""
        if not self._in_flight:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def _track(self, sent: Deferred[Any]) -> Deferred[Any]:
        self._in_flight += 1
        answer: Deferred[Any] = Deferred()

        def replied(result: Any) -> None:
            if not answer.called:  # not cancelled by the caller meanwhile
                answer.callback(result)
            self._in_flight -= 1
            if not self._in_flight:
                waiting, self._idle = self._idle, []
                for d in waiting:
                    d.callback(None)

        sent.addBoth(replied)
        return answer


class _DeliverWhenFinished(Resource):
    """Wraps the master's resource: each finished answer is pushed to its client
    (after whatever the handler itself does when the request finishes)."""

    isLeaf = True

    def __init__(self, inner: Any, deliver: Any) -> None:
        super().__init__()
        self._inner = inner
        self._deliver = deliver

    def render(self, request: Any) -> Any:
        answer = self._inner.render(request)
        request.notifyFinish().addBoth(lambda _: self._deliver())
        return answer


class InMemoryWire:
    """StubTreq over a resource whose answers arrive without anyone calling `flush`.

    StubTreq's flush must not nest (a nested one loses connections), and a
    test's code runs inside the flush that delivered its answer; a flush asked
    for meanwhile is done by the outer one once it returns (`delivered`).
    """

    def __init__(self, resource: Any) -> None:
        self.stub = StubTreq(_DeliverWhenFinished(resource, self.flush))
        self._flushing = False
        self._again = False
        self._flushed: list[Deferred[None]] = []

    def flush(self) -> None:
        """Deliver every byte written on either side."""
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self.stub.flush()
        finally:
            self._flushing = False
        waiting, self._flushed = self._flushed, []
        for d in waiting:
            d.callback(None)

    def delivered(self) -> Deferred[None]:
        """Fires once every byte written so far is delivered, outside any flush."""
        if not self._flushing:
            self.flush()
            return succeed(None)
        self._again = True
        d: Deferred[None] = Deferred()
        self._flushed.append(d)
        return d


class MasterHarness:
    """A MasterAPI on a real Redis, reached in memory."""

    def __init__(self, api: Any, redis: TrackedRedis) -> None:
        self.api = api
        self.redis = redis
        self.clock = api.clock
        self.wire = InMemoryWire(api.app.resource())
        self.http = self.wire.stub

    async def call(self, method: str, path: str, body: Any = None, key: str | None = CLUSTER_KEY,
                   raw: bytes | None = None, headers: dict[bytes, list[bytes]] | None = None
                   ) -> Reply:
        """Send a request; returns code, body and headers."""
        sent = dict(headers or {})
        if key is not None:
            sent[b"Authorization"] = [b"Bearer " + key.encode()]
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent[b"Content-Type"] = [b"application/json"]
        response = await self.http.request(method, BASE_URL + path, data=data, headers=sent,
                                           allow_redirects=False)
        content = await self.http.content(response)
        await self.wire.delivered()
        return Reply(response.code, content, response.headers)

    def client(self, reader: str = "") -> Any:
        """A MasterClient speaking to this master (its deadlines on the master's clock)."""
        from stretchfs.wire.master import MasterClient

        return MasterClient(self.http, BASE_URL, CLUSTER_KEY, timeout=10.0, clock=self.clock,
                            reader=reader)

    async def settled(self) -> None:
        """Wait until the master has nothing in flight: no Redis command outstanding and
        every answer written so far delivered."""
        while True:
            await self.redis.idle()
            await self.wire.delivered()
            if not self.redis.busy:
                return


def build_master(redis_url: str, clock: Any, extra: str = "", *, redis_clock: Any = None,
                 redis_timeout: float = 5.0, replica_acks: int = 0,
                 **settings: Any) -> MasterHarness:
    """A MasterAPI (bcrypt cost 4, run inline) on a real Redis; `settings` are further
    MasterAPI arguments.  Redis deadlines run on the real reactor unless `redis_clock`;
    `replica_acks` is `[redis] min_replica_acks`."""
    from twisted.internet import reactor

    from stretchfs.health import Readiness
    from stretchfs.master.api import MasterAPI
    from stretchfs.metrics import new_registry
    from stretchfs.redisstore import connect_redis, parse_redis_url
    from stretchfs.wire.http import make_http_client

    config = load_test_config("master", redis_url=redis_url,
                              extra="[master]\nbcrypt_rounds = 4\n" + extra)
    redis = TrackedRedis(connect_redis(parse_redis_url(redis_url), redis_clock or reactor,
                                       timeout=redis_timeout, min_replica_acks=replica_acks))
    api = MasterAPI(config, readiness=Readiness(), metrics_registry=new_registry(False),
                    redis=redis, clock=clock, run_blocking=maybeDeferred,
                    http=make_http_client(clock), **settings)
    return MasterHarness(api, redis)
