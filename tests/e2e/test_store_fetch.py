"""Repair copies between real store processes: download and fetch stream whole files."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request

from stretchfs.devcluster.cluster import LocalCluster


def _call(url: str, key: str, body: object = None, raw: bytes | None = None,
          method: str = "POST") -> tuple[int, bytes]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": "Bearer " + key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_download_and_fetch_copy_whole_files(tmp_path, repo_root: str, monkeypatch) -> None:
    """A store's download sends every byte, and another store's fetch stores a verified copy."""
    monkeypatch.setenv("PYTHONPATH", repo_root)
    cluster = LocalCluster(str(tmp_path / "cluster"), prisms=0, stores=2, say=lambda s: None)
    try:
        state = cluster.up(timeout=60)
        key = state["cluster_key"]
        stores = {n["name"]: n for n in state["nodes"] if n["role"] == "store"}
        for size in (100_000, 8 * 1024 * 1024):
            data = os.urandom(size)
            sha1 = hashlib.sha1(data).hexdigest()
            put = _call(stores["store1"]["url"] + "/content/put/{}.bin".format(sha1), key,
                        raw=data, method="PUT")
            assert put[0] == 201
            assert _call(stores["store1"]["url"] + "/content/download", key,
                         {"hash": sha1}) == (200, data)
            code, body = _call(stores["store2"]["url"] + "/content/fetch", key,
                               {"hash": sha1, "ext": "bin", "from": "store1"})
            assert code == 201, body
            path = os.path.join(stores["store2"]["root"], "content", sha1[:2], sha1[2:4],
                                sha1 + ".bin")
            with open(path, "rb") as handle:
                assert handle.read() == data
    finally:
        cluster.down()
