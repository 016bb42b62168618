"""A real store against the real master: puts, removes and the start-up sync reach the inventory."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request

from tests.helpers import CLUSTER_KEY, minimal_config

AUTH = {"Authorization": "Bearer " + CLUSTER_KEY}


def _call(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=AUTH)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_row(master: str, sha1: str, present: bool, timeout: float = 20.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = _call(master + "/inventory/" + sha1)
        if present and code == 200 and "store1" in json.loads(body).get("stores", []):
            return json.loads(body)
        if not present and code == 404:
            return None
        time.sleep(0.1)
    raise AssertionError("inventory row of {} not {} after {} s".format(
        sha1, "present" if present else "gone", timeout))


def test_store_keeps_the_real_masters_inventory_current(launch, redis_url, tmp_path) -> None:
    """PUT and remove are published at once; a file planted by hand is found by the sync."""
    master_node = launch("master", minimal_config("master", redis_url=redis_url))
    master = "http://127.0.0.1:{}".format(master_node.port)
    root = str(tmp_path / "store-root")
    planted = b"planted by hand before start"
    planted_sha1 = hashlib.sha1(planted).hexdigest()
    folder = os.path.join(root, "content", planted_sha1[:2], planted_sha1[2:4])
    os.makedirs(folder)
    with open(os.path.join(folder, planted_sha1 + ".txt"), "wb") as handle:
        handle.write(planted)
    store = launch("store", minimal_config("store", root=root, redis_url=redis_url,
                                           master_url=master,
                                           extra="\n[ping]\nenabled = false\n"))
    base = "http://127.0.0.1:{}".format(store.port)
    row = _wait_row(master, planted_sha1, present=True)
    assert row["ext"] == "txt" and row["size"] == len(planted)

    data = os.urandom(100_000)
    sha1 = hashlib.sha1(data).hexdigest()
    code, _ = _call(base + "/content/put/{}.png".format(sha1), "PUT", data)
    assert code == 201
    _wait_row(master, sha1, present=True)
    code, _ = _call(base + "/content/remove", "POST", json.dumps({"hash": sha1}).encode())
    assert code == 200
    _wait_row(master, sha1, present=False)
    store.stop()
    assert store.shut_down_cleanly()
