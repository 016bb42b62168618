"""The master's Prometheus metrics, registered on the process registry."""

from __future__ import annotations

import functools
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram


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


def counted(route: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Count each request of the decorated handler by `route` and final status code."""

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def wrapper(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            metrics: MasterMetrics = self.metrics

            def done(_: Any) -> None:
                metrics.requests.labels(route=route, code=str(request.code)).inc()

            request.notifyFinish().addBoth(done)
            return handler(self, request, *args, **kwargs)

        return wrapper

    return decorate
