"""Re-replication end to end: a store killed for good has its copies made again, and
when it returns the extra copies are trimmed; a drained store is emptied and removed."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.scenarios import SCENARIOS, Options
from stretchfs.devcluster.process import http_call, read_events

LOST_AFTER_SECONDS = 5.0
OPTIONS = Options(seed_files=12, threads=2, settle_seconds=2.0, repair_seconds=60.0)


def _events(handle: ClusterHandle, event: str) -> list[dict[str, Any]]:
    return [e for e in read_events(handle.node("master")["log"]) if e.get("event") == event]


@pytest.mark.parametrize("scenario", ["store-lost", "store-returns"])
def test_a_lost_store_is_repaired_and_trimmed_when_it_returns(
        dev_cluster: Callable[..., ClusterHandle], scenario: str) -> None:
    """Four stores, replicas 2: after one is killed for good, every hash it held is back
    to 2 copies within the bound and no download fails after detection; with
    store-returns, once it is back with its data the extra copies are trimmed without
    any content dropping below 2.  Every content downloads with its SHA1, and the
    master logged the store's state changes, its repair batches (and its trims)."""
    handle = dev_cluster(prisms=1, stores=4, lost_after=LOST_AFTER_SECONDS)
    report = SCENARIOS[scenario](handle, OPTIONS)
    assert report.ok, report.explain()
    assert report.data_lost == 0
    status, body = http_call("GET", handle.state["master_url"] + "/repair/status",
                             key=handle.state["cluster_key"])
    repaired = json.loads(body)["repaired"]
    assert status == 200 and repaired["copies"] > 0
    states = [e.get("state") for e in _events(handle, "repair_store")]
    assert states[:2] == ["down", "lost"], states
    assert _events(handle, "repair_batch")
    if scenario == "store-returns":
        assert states[2:3] == ["back"], states
        assert repaired["trims"] > 0 and _events(handle, "repair_trim")


def test_a_drained_store_is_emptied_removed_and_stopped_under_load(
        dev_cluster: Callable[..., ClusterHandle]) -> None:
    """Four stores, replicas 2: a drained store's content is copied elsewhere, it is then
    removed without --force and stopped; no download fails and nothing is lost."""
    handle = dev_cluster(prisms=1, stores=4, lost_after=LOST_AFTER_SECONDS)
    report = SCENARIOS["drain"](handle, OPTIONS)
    assert report.ok, report.explain()
    assert report.data_lost == 0 and not report.failed
    assert [e.get("state") for e in _events(handle, "repair_store")][:1] == ["drained"]
