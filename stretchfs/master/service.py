"""Assembles the master process from injected reactor and Redis."""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge
from treq.client import HTTPClient
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stretchfs.config import MasterConfig
from stretchfs.errors import StretchFSError
from stretchfs.health import Readiness
from stretchfs.master.api import PUBLISH_MAX_BYTES, MasterAPI
from stretchfs.master.lease import Lease, Releasable, lease_owner
from stretchfs.master.planner import repair_planner
from stretchfs.master.purchases import PurchasePruner
from stretchfs.metrics import new_registry
from stretchfs.redishealth import RedisWatch
from stretchfs.redisstore import RedisStore
from stretchfs.roles import CallOnStop, http_services
from stretchfs.threads import RunBlocking

log = Logger()

REDIS_CHECK_SECONDS = 2.0


class MasterService(MultiService):
    """The master process's services, with a handle on its API (tests, tools)."""

    def __init__(self, api: MasterAPI) -> None:
        super().__init__()
        self.api = api
        self.leased: list[Releasable] = []

    def stopService(self) -> Deferred[Any]:
        """Drain the feeds (`MasterAPI.drain`), give up the leases of `leased` jobs (so
        another master takes them at once), then stop every service."""
        drained = Deferred.fromCoroutine(self._before_stop())
        return drained.addCallback(lambda _: MultiService.stopService(self))

    async def _before_stop(self) -> None:
        await self.api.drain()
        for job in self.leased:
            try:
                await job.release()
            except StretchFSError as exc:   # Redis away: the lease runs out instead
                log.warn("{job} lease not given up: {error}", job=job.job, error=str(exc))


def build_master_service(config: MasterConfig, *, reactor: Any, redis: RedisStore,
                         run_blocking: RunBlocking, http: HTTPClient) -> MasterService:
    """The master: HTTP API over the cluster Redis, plus its periodic jobs.

    Jobs that must run on one master at a time hold a lease (docs/ha.md): the
    purchase pruning (`PurchasePruner`) and the repair planner with its store
    watch and trim.  The ping-net view for the dashboard (`api.verdicts`) and the
    node probe (`api.probe`) write nothing to Redis and feed this master's own
    dashboard and planner, so every master runs them.

    `run_blocking` runs bcrypt off the reactor thread (the thread pool; tests
    pass an inline runner); `http` probes the nodes and asks stores for repair copies.
    """
    readiness = Readiness()
    registry = new_registry()
    api = MasterAPI(config, readiness=readiness, metrics_registry=registry, redis=redis,
                    clock=reactor, run_blocking=run_blocking, http=http)
    top = MasterService(api)
    RedisWatch(redis, reactor, readiness, REDIS_CHECK_SECONDS).setServiceParent(top)
    prune_leader = Gauge("stretchfs_master_prune_leader",
                         "1 while this master runs the purchase pruning", registry=registry)
    lease = Lease(redis, api.keys.prune_lease, lease_owner(config.node.name),
                  config.master.lease_ttl, reactor)
    pruner = PurchasePruner(api.purchases, lease, reactor, config.master.prune_interval,
                            on_hold=prune_leader.set, on_pruned=api.record_prune)
    pruner.setServiceParent(top)
    top.leased.append(pruner)
    for listener in http_services(reactor, config.http.listen, api.app.resource(), "master",
                                  max_body=max(config.http.max_body, PUBLISH_MAX_BYTES)):
        listener.setServiceParent(top)
    api.verdicts.setServiceParent(top)
    api.probe.setServiceParent(top)
    planner = repair_planner(config, redis, reactor, http, api)
    planner.setServiceParent(top)
    top.leased.append(planner)
    CallOnStop(redis.close).setServiceParent(top)
    return top
