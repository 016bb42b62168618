"""Repair copies between real store processes: download and fetch stream whole files."""

from __future__ import annotations

import hashlib
import os

from stretchfs.devcluster.cluster import LocalCluster
from stretchfs.devcluster.process import http_call


def test_download_and_fetch_copy_whole_files(tmp_path, repo_root: str, monkeypatch) -> None:
    """A store's download sends every byte, and another store's fetch stores a verified copy."""
    monkeypatch.setenv("PYTHONPATH", repo_root)
    cluster = LocalCluster(str(tmp_path / "cluster"), prisms=0, stores=2, say=lambda s: None)
    try:
        state = cluster.up(timeout=60)
        key = state["cluster_key"]
        stores = {n["name"]: n for n in state["nodes"] if n["role"] == "store"}
        for size in (100_000, 24 * 1024 * 1024):
            data = os.urandom(size)
            sha1 = hashlib.sha1(data).hexdigest()
            put = http_call("PUT", stores["store1"]["url"] + "/content/put/{}.bin".format(sha1),
                            data=data, key=key, timeout=30)
            assert put[0] == 201
            assert http_call("POST", stores["store1"]["url"] + "/content/download",
                             {"hash": sha1}, key=key, timeout=30) == (200, data)
            code, body = http_call("POST", stores["store2"]["url"] + "/content/fetch",
                                   {"hash": sha1, "ext": "bin", "from": "store1"}, key=key,
                                   timeout=30)
            assert code == 201, body
            path = os.path.join(stores["store2"]["root"], "content", sha1[:2], sha1[2:4],
                                sha1 + ".bin")
            with open(path, "rb") as handle:
                assert handle.read() == data
    finally:
        cluster.down()
