"""Watches the cluster Redis and reports it in the process's readiness."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from stretchfs.health import Readiness
from stretchfs.redisstore import RedisStore, RedisUnavailable

log = Logger()
REDIS_REASON = "redis"


class RedisWatch(Service):
    """PINGs Redis every `interval` seconds; blocks readiness while it is away."""

    def __init__(self, redis: RedisStore, clock: IReactorTime, readiness: Readiness,
                 interval: float) -> None:
        self._redis = redis
        self._readiness = readiness
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock
        self._interval = interval
        self.up: bool | None = None

    def startService(self) -> None:
        """Block readiness until the first PING answers, then keep checking."""
        super().startService()
        self._readiness.block(REDIS_REASON, "connecting to the cluster Redis")
        self._loop.start(self._interval, now=True)

    def stopService(self) -> None:
        """Stop checking."""
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def check(self) -> Deferred[None]:
        """One PING; updates readiness and logs only on a change."""
        return Deferred.fromCoroutine(self._check())

    async def _check(self) -> None:
        try:
            await self._redis.execute("PING")
        except RedisUnavailable:
            if self.up is not False:
                log.warn("cluster Redis unreachable", event="redis_down")
            self.up = False
            self._readiness.block(REDIS_REASON, "cluster Redis unreachable")
            return
        except Exception:
            log.failure("while checking the cluster Redis")
            return
        if self.up is not True:
            log.info("cluster Redis reachable", event="redis_up")
        self.up = True
        self._readiness.clear(REDIS_REASON)
