"""Assembles the master process from injected reactor and Redis."""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService

from stretchfs.config import MasterConfig
from stretchfs.health import Readiness
from stretchfs.master.api import MasterAPI
from stretchfs.metrics import new_registry
from stretchfs.redishealth import RedisWatch
from stretchfs.redisstore import RedisStore
from stretchfs.roles import CallOnStop, http_service

REDIS_CHECK_SECONDS = 2.0


def build_master_service(config: MasterConfig, *, reactor: Any, redis: RedisStore,
                         http: Any = None) -> MultiService:
    """The master: HTTP API over the cluster Redis."""
    top = MultiService()
    readiness = Readiness()
    registry = new_registry()
    api = MasterAPI(config, readiness=readiness, metrics_registry=registry, redis=redis,
                    clock=reactor)
    RedisWatch(redis, reactor, readiness, REDIS_CHECK_SECONDS).setServiceParent(top)
    http_service(reactor, config.http.listen, api.app.resource(), "master").setServiceParent(top)
    CallOnStop(redis.close).setServiceParent(top)
    top.api = api  # type: ignore[attr-defined]
    return top
