"""Assembles the prism process from injected reactor, Redis and HTTP client."""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService

from stretchfs.config import PrismConfig
from stretchfs.health import Readiness
from stretchfs.metrics import new_registry
from stretchfs.prism.api import PrismAPI
from stretchfs.redisstore import RedisStore
from stretchfs.roles import CallOnStop, http_service


def build_prism_service(config: PrismConfig, *, reactor: Any, redis: RedisStore,
                        http: Any) -> MultiService:
    """The prism: the public API."""
    top = MultiService()
    readiness = Readiness()
    registry = new_registry()
    api = PrismAPI(config, readiness=readiness, metrics_registry=registry, clock=reactor)
    http_service(reactor, config.http.listen, api.app.resource(), "prism").setServiceParent(top)
    CallOnStop(redis.close).setServiceParent(top)
    top.api = api  # type: ignore[attr-defined]
    return top
