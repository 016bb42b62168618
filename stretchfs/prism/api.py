"""The prism's public HTTP API."""

from __future__ import annotations

from typing import Any

from klein import Klein
from prometheus_client import CollectorRegistry

from stretchfs.config import PrismConfig
from stretchfs.health import Readiness
from stretchfs.web.common import add_common_routes
from stretchfs.web.errormap import install_error_handlers


class PrismAPI:
    """Public routes of a prism (SDK-compatible)."""

    app = Klein()
    install_error_handlers(app)
    add_common_routes(app, "prism")

    def __init__(self, config: PrismConfig, *, readiness: Readiness,
                 metrics_registry: CollectorRegistry, clock: Any) -> None:
        self.config = config
        self.node_name = config.node.name
        self.cluster_key = config.cluster.key
        self.readiness = readiness
        self.metrics_registry = metrics_registry
        self.clock = clock
