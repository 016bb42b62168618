"""Assembles the master process from injected reactor and Redis."""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred

from stretchfs.config import MasterConfig
from stretchfs.health import Readiness
from stretchfs.master.api import PUBLISH_MAX_BYTES, MasterAPI
from stretchfs.master.nodeprobe import NodeProbe
from stretchfs.master.pingview import ClusterVerdicts
from stretchfs.master.purchases import PurchasePruner
from stretchfs.metrics import new_registry
from stretchfs.redishealth import RedisWatch
from stretchfs.redisstore import RedisStore
from stretchfs.roles import CallOnStop, http_services
from stretchfs.threads import thread_runner

REDIS_CHECK_SECONDS = 2.0


class MasterService(MultiService):
    """The master process's services, with a handle on its API (tests, tools)."""

    api: MasterAPI

    def stopService(self) -> Deferred[Any]:
        """Drain the feeds (`MasterAPI.drain`), then stop every service."""
        drained = Deferred.fromCoroutine(self.api.drain())
        return drained.addCallback(lambda _: MultiService.stopService(self))


def build_master_service(config: MasterConfig, *, reactor: Any, redis: RedisStore,
                         http: Any = None,
                         run_blocking: Callable[..., Deferred[Any]] | None = None
                         ) -> MasterService:
    """The master: HTTP API over the cluster Redis, plus the purchase pruning job."""
    top = MasterService()
    readiness = Readiness()
    registry = new_registry()
    run_blocking = run_blocking or thread_runner(reactor)
    assert run_blocking is not None, "the master needs a reactor with a thread pool"
    api = MasterAPI(config, readiness=readiness, metrics_registry=registry, redis=redis,
                    clock=reactor, run_blocking=run_blocking)
    RedisWatch(redis, reactor, readiness, REDIS_CHECK_SECONDS).setServiceParent(top)
    PurchasePruner(api.purchases, reactor, config.master.prune_interval,
                   on_pruned=api.record_prune).setServiceParent(top)
    for listener in http_services(reactor, config.http.listen, api.app.resource(), "master",
                                  max_body=max(config.http.max_body, PUBLISH_MAX_BYTES)):
        listener.setServiceParent(top)
    api.verdicts = ClusterVerdicts(redis, config.redis.prefix, api.peers.list, reactor)
    api.verdicts.setServiceParent(top)
    if http is not None:
        api.probe = NodeProbe(http, config.cluster.key, reactor, api.peers.list, api.feed_cursors)
        api.probe.setServiceParent(top)
    CallOnStop(redis.close).setServiceParent(top)
    top.api = api
    return top
