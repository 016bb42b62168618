"""Prometheus metrics: one registry per process, handed to every component."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)


def new_registry(process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry, with process/platform/gc collectors when asked."""
    registry = CollectorRegistry()
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


__all__ = ["METRICS_CONTENT_TYPE", "new_registry"]
