"""The master's Prometheus metrics, registered on the process registry."""

from __future__ import annotations

import functools
from typing import Callable, Concatenate, ParamSpec, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from twisted.web.server import Request


class MasterMetrics:
    """Requests by route, publish rows, feed waits, login failures, prunes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("stretchfs_master_requests", "HTTP requests by route and status",
                                ["route", "code"], registry=registry)
        self.publish_rows = Counter("stretchfs_master_publish_rows",
                                    "inventory changes received, by result",
                                    ["result"], registry=registry)
        self.feed_waits = Counter("stretchfs_master_feed_waits",
                                  "feed long-polls that had to wait, by feed and outcome",
                                  ["feed", "outcome"], registry=registry)
        self.feed_wait_seconds = Histogram("stretchfs_master_feed_wait_seconds",
                                           "time feed long-polls waited", ["feed"],
                                           registry=registry)
        self.login_failures = Counter("stretchfs_master_login_failures",
                                      "failed logins by reason", ["reason"], registry=registry)
        self.purchases_pruned = Counter("stretchfs_master_purchases_pruned",
                                        "expired purchases removed by pruning",
                                        registry=registry)
        self.prune_runs = Counter("stretchfs_master_prune_runs", "purchase prune runs",
                                  registry=registry)
        self.snapshot_rows = Counter("stretchfs_master_snapshot_rows",
                                     "rows streamed in snapshots, by kind", ["kind"],
                                     registry=registry)


class _Measured(Protocol):
    """An API object whose `metrics` count its requests."""

    metrics: MasterMetrics


S = TypeVar("S", bound=_Measured)
P = ParamSpec("P")
R = TypeVar("R")
Handler = Callable[Concatenate[S, Request, P], R]


def counted(route: str) -> Callable[[Handler[S, P, R]], Handler[S, P, R]]:
    """Count each request of the decorated handler by `route` and final status code."""

    def decorate(handler: Handler[S, P, R]) -> Handler[S, P, R]:
        @functools.wraps(handler)
        def wrapper(self: S, request: Request, /, *args: P.args, **kwargs: P.kwargs) -> R:
            metrics = self.metrics

            def done(_: object) -> None:
                metrics.requests.labels(route=route, code=str(request.code)).inc()

            request.notifyFinish().addBoth(done)
            return handler(self, request, *args, **kwargs)

        return wrapper

    return decorate


class RepairMetrics:
    """The repair planner's view: content by counted copies, queue, copies made."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hashes = Gauge("stretchfs_repair_hashes",
                            "content by counted copies at the last scan (label: 0, 1, ... "
                            "'<replicas>+')", ["copies"], registry=registry)
        self.queue = Gauge("stretchfs_repair_queue", "content waiting for a new copy",
                           registry=registry)
        self.copies = Counter("stretchfs_repair_copies", "copies made by repair",
                              registry=registry)
        self.bytes = Counter("stretchfs_repair_bytes", "bytes copied by repair",
                             registry=registry)
        self.failures = Counter("stretchfs_repair_failures", "repair copies that failed",
                                registry=registry)
        self.trims = Counter("stretchfs_repair_trims", "copies removed from content over "
                             "replicas", registry=registry)
        self.leader = Gauge("stretchfs_repair_leader", "1 while this master runs the planner",
                            registry=registry)
