"""Bit rot end to end: a store's scrub finds flipped bytes and a good copy comes back."""

from __future__ import annotations

import hashlib
import os
from typing import Callable

from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.scenarios import SCENARIOS, Options, corrupt_found
from stretchfs.devcluster.process import decode_json, http_call
from stretchfs.store.layout import ContentStore


def test_flipped_bytes_are_found_quarantined_and_repaired(
        dev_cluster: Callable[..., ClusterHandle]) -> None:
    """Three stores, replicas 2 (the bit-rot scenario): bytes flipped in the files of one
    store are found by its scrub (one log line each), no corrupt copy is served after
    that, each content is back to 2 good copies and downloads with its SHA1; the
    corrupt files sit in the store's quarantine folder, and whatever copy it holds
    now is good."""
    handle = dev_cluster(prisms=1, stores=3, lost_after=5.0)
    report = SCENARIOS["bit-rot"](handle, Options(seed_files=10, threads=2,
                                                  settle_seconds=2.0, repair_seconds=60.0))
    assert report.ok, report.explain()
    assert report.data_lost == 0
    victim = handle.node(handle.nodes("store")[-1]["name"])
    rotten = corrupt_found(victim["log"])
    assert len(rotten) >= 1
    store = ContentStore(victim["root"])
    quarantined = os.listdir(os.path.join(store.root, "quarantine"))
    assert sorted(name.split(".")[0] for name in quarantined) == sorted(rotten)
    for sha1 in rotten:
        found = store.find(sha1)
        if found is not None:
            with open(found.path, "rb") as good:
                assert hashlib.sha1(good.read()).hexdigest() == sha1
    status, body = http_call("GET", handle.state["master_url"] + "/repair/status",
                             key=handle.state["cluster_key"])
    assert status == 200 and decode_json(body)["repaired"]["copies"] >= len(rotten)
    with open(victim["config"], encoding="utf-8") as config:
        assert "[scrub]" not in config.read()      # the scenario restored its config
