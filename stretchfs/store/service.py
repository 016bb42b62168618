"""Assembles the store process from injected reactor, Redis and HTTP client."""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.logger import Logger

from stretchfs.config import StoreConfig
from stretchfs.health import Readiness
from stretchfs.metrics import new_registry
from stretchfs.redisstore import RedisStore
from stretchfs.roles import CallOnStop, http_service
from stretchfs.store.api import StoreAPI

log = Logger()
ROOT_REASON = "root"


class PrepareRoot(Service):
    """Creates the content root at start; blocks readiness if it cannot."""

    def __init__(self, root: str, readiness: Readiness) -> None:
        self._root = root
        self._readiness = readiness

    def startService(self) -> None:
        """Create the root (and its temp folder) and check it is writable."""
        super().startService()
        try:
            os.makedirs(os.path.join(self._root, "tmp"), exist_ok=True)
            if not os.access(self._root, os.W_OK):
                raise PermissionError("not writable")
        except OSError as exc:
            log.critical("store root {root} unusable: {error}", root=self._root, error=str(exc))
            self._readiness.block(ROOT_REASON, "store root unusable: {}".format(exc))
            return
        self._readiness.clear(ROOT_REASON)


def build_store_service(config: StoreConfig, *, reactor: Any, redis: RedisStore,
                        http: Any) -> MultiService:
    """The store: content on one disk, served over HTTP."""
    top = MultiService()
    readiness = Readiness()
    registry = new_registry()
    api = StoreAPI(config, readiness=readiness, metrics_registry=registry, clock=reactor)
    PrepareRoot(config.store.root, readiness).setServiceParent(top)
    http_service(reactor, config.http.listen, api.app.resource(), "store").setServiceParent(top)
    CallOnStop(redis.close).setServiceParent(top)
    top.api = api  # type: ignore[attr-defined]
    return top
