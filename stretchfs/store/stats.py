"""Counters of a store, shown on `/stat` and exported to Prometheus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass
class StoreStats:
    """Plain counters (cheap on the delivery hot path)."""

    bytes_served: int = 0
    deliveries: int = 0
    denied: int = 0
    puts: int = 0
    bytes_received: int = 0
    removes: int = 0
    scrubbed_bytes: int = 0
    scrubbed_files: int = 0
    corrupt_found: int = 0
    files: int | None = None
    last_sync: float | None = None


class StoreStatsCollector:
    """Exports a `StoreStats` (and the publish backlog) as Prometheus metrics."""

    def __init__(self, stats: StoreStats, backlog: Callable[[], int]) -> None:
        self._stats = stats
        self._backlog = backlog

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families."""
        stats = self._stats
        for name, doc, value in (
            ("stretchfs_store_bytes_served", "bytes sent by signed deliveries",
             stats.bytes_served),
            ("stretchfs_store_deliveries", "signed deliveries answered with bytes",
             stats.deliveries),
            ("stretchfs_store_denied", "deliveries refused for a bad or expired signature",
             stats.denied),
            ("stretchfs_store_puts", "content PUTs and fetches stored", stats.puts),
            ("stretchfs_store_removes", "content removals", stats.removes),
            ("stretchfs_store_scrubbed_bytes", "bytes re-read and re-hashed by the scrub",
             stats.scrubbed_bytes),
            ("stretchfs_store_scrubbed_files", "files re-hashed by the scrub",
             stats.scrubbed_files),
            ("stretchfs_store_corrupt_found", "files the scrub found corrupt (quarantined)",
             stats.corrupt_found),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("stretchfs_store_files", "content files on this store",
                                value=stats.files or 0)
        yield GaugeMetricFamily("stretchfs_store_publish_backlog",
                                "inventory changes not yet acknowledged by the master",
                                value=self._backlog())
