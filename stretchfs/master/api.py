"""The master's HTTP API."""

from __future__ import annotations

from typing import Any

from klein import Klein
from prometheus_client import CollectorRegistry

from stretchfs.config import MasterConfig
from stretchfs.health import Readiness
from stretchfs.redisstore import RedisStore
from stretchfs.web.common import add_common_routes
from stretchfs.web.errormap import install_error_handlers


class MasterAPI:
    """Routes of the master: cluster state for the other roles and operators."""

    app = Klein()
    install_error_handlers(app)
    add_common_routes(app, "master")

    def __init__(self, config: MasterConfig, *, readiness: Readiness,
                 metrics_registry: CollectorRegistry, redis: RedisStore, clock: Any) -> None:
        self.config = config
        self.node_name = config.node.name
        self.cluster_key = config.cluster.key
        self.readiness = readiness
        self.metrics_registry = metrics_registry
        self.redis = redis
        self.clock = clock
