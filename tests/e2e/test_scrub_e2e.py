"""Bit rot end to end: a store's scrub finds flipped bytes and a good copy comes back."""

from __future__ import annotations

import hashlib
import os

from stretchfs.chaos.client import PrismUser
from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.watch import wait_until
from stretchfs.devcluster.cluster import LocalCluster, stop_detached
from stretchfs.devcluster.process import decode_json, http_call, read_events
from stretchfs.store.layout import ContentStore

FILES = 8
REPAIR_SECONDS = 60.0


def _holders(handle: ClusterHandle, hashes: list[str]) -> dict[str, set[str]]:
    status, data = http_call("POST", handle.state["master_url"] + "/inventory/lookup",
                             {"hashes": hashes}, key=handle.state["cluster_key"], timeout=15)
    assert status == 200, status
    rows = decode_json(data)
    return {sha1: set((rows.get(sha1) or {}).get("stores", [])) for sha1 in hashes}


def _append(path: str, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def _flip_byte(path: str) -> None:
    with open(path, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_flipped_bytes_are_found_quarantined_and_repaired(tmp_path, repo_root: str) -> None:
    """Three stores, replicas 2: bytes flipped in every file of one store are found by its
    scrub (one log line each), the corrupt copies are quarantined and unpublished, the
    master restores a second good copy of each, and every content downloads with its
    SHA1 through the prism."""
    workdir = str(tmp_path / "cluster")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = repo_root
    cluster = LocalCluster(workdir, prisms=1, stores=3, say=lambda text: None, lost_after=5.0)
    user = None
    try:
        cluster.up(timeout=90)
        handle = ClusterHandle(workdir)
        user = PrismUser(handle.nodes("prism")[0]["url"], handle.user["username"],
                         handle.user["password"])
        user.login()
        uploads = [user.upload(os.urandom(20_000 + index), "file{}.bin".format(index))
                   for index in range(FILES)]
        tokens = {c.hash: user.purchase(c.hash, c.ext) for c in uploads}
        hashes = sorted(tokens)
        assert wait_until(lambda: all(len(s) == 2 for s in _holders(handle, hashes).values()),
                          30.0, step=0.5) is not None
        holders = _holders(handle, hashes)
        victim = max((n["name"] for n in handle.nodes("store")),
                     key=lambda name: sum(name in s for s in holders.values()))
        rotten = [sha1 for sha1 in hashes if victim in holders[sha1]]
        # The master rescans its inventory every second (a removal changes no store
        # state); the victim's scrub starts a new pass at once after its restart.
        handle.stop("master")
        _append(handle.node("master")["config"], "rescan = 1.0\n")
        handle.stop(victim)
        node = handle.node(victim)
        store = ContentStore(os.path.join(workdir, "data", victim))
        for sha1 in rotten:
            _flip_byte(store.find(sha1).path)
        _append(node["config"], "\n[scrub]\nperiod = 1.0\n")
        handle.start("master")
        handle.start(victim)

        def corrupt_logged() -> set[str]:
            return {e["name"].split(".")[0] for e in read_events(node["log"])
                    if e.get("event") == "scrub_corrupt"}

        assert wait_until(lambda: corrupt_logged() >= set(rotten), 30.0, step=0.5) is not None
        assert corrupt_logged() == set(rotten)
        quarantined = os.listdir(os.path.join(store.root, "quarantine"))
        assert sorted(name.split(".")[0] for name in quarantined) == rotten
        repaired = wait_until(
            lambda: all(len(s) == 2 for s in _holders(handle, rotten).values()),
            REPAIR_SECONDS, step=0.5)
        assert repaired is not None, _holders(handle, rotten)
        now = _holders(handle, rotten)
        for sha1 in rotten:
            found = store.find(sha1)  # the victim holds a good copy again, or none
            assert (victim in now[sha1]) == (found is not None)
            if found is not None:
                with open(found.path, "rb") as good:
                    assert hashlib.sha1(good.read()).hexdigest() == sha1
        status, body = http_call("GET", handle.state["master_url"] + "/repair/status",
                                 key=handle.state["cluster_key"])
        assert status == 200 and decode_json(body)["repaired"]["copies"] >= len(rotten)
        for content in uploads:
            user.download(tokens[content.hash], "file." + content.ext, content.hash)
    finally:
        if user is not None:
            user.close()
        stop_detached(workdir, say=lambda text: None)
        cluster.down()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
