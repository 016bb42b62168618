"""`stretchfs inventory sync` against a (stand-in) master: both directions, by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from stretchfs.devcluster.ports import free_port
from stretchfs.devcluster.process import http_get_json
from stretchfs.wire.signing import delivery_secret
from tests.helpers import CLUSTER_KEY, minimal_config


def _write(root: str, sha1: str, ext: str, data: bytes = b"") -> None:
    folder = os.path.join(root, "content", sha1[:2], sha1[2:4])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "{}.{}".format(sha1, ext)), "wb") as handle:
        handle.write(data)


def test_inventory_sync_by_hand(tmp_path, repo_root: str) -> None:
    """The command publishes unknown files as added and missing ones as removed."""
    root = str(tmp_path / "root")
    _write(root, "a" * 40, "mp4")
    _write(root, "b" * 40, "jpg")
    rows = tmp_path / "rows.ndjson"
    rows.write_text("\n".join(json.dumps(r) for r in [
        {"hash": "b" * 40, "ext": "jpg", "size": 0},
        {"hash": "c" * 40, "ext": "png", "size": 9}]) + "\n")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=repo_root)
    master = subprocess.Popen([sys.executable, "-m", "tests.store.standin_master", "--port",
                               str(port), "--key", CLUSTER_KEY, "--rows", str(rows)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        base = "http://127.0.0.1:{}".format(port)
        while http_get_json(base + "/health")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        config = tmp_path / "store.toml"
        config.write_text(minimal_config("store", root=root, master_url=base))
        result = subprocess.run([sys.executable, "-m", "stretchfs.cli.main", "inventory", "sync",
                                 "--config", str(config)], capture_output=True, text=True,
                                timeout=60, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 added, 1 removed" in result.stdout
        state = http_get_json(base + "/_standin/state")[1]
        changes = [c for batch in state["batches"] for c in batch["changes"]]
        assert {"op": "add", "hash": "a" * 40, "ext": "mp4", "size": 0} in changes
        assert {"op": "remove", "hash": "c" * 40} in changes
        assert state["counts"]["store1"] == 2
        secret = subprocess.run([sys.executable, "-m", "stretchfs.cli.main", "inventory",
                                 "delivery-secret", "--config", str(config)],
                                capture_output=True, text=True, timeout=60, env=env)
        assert secret.stdout.strip() == delivery_secret(CLUSTER_KEY)
    finally:
        master.terminate()
        master.wait(10)


def test_inventory_sync_without_master_fails_clearly(tmp_path, repo_root: str) -> None:
    """With the master unreachable the command says so and exits non-zero."""
    root = str(tmp_path / "root")
    os.makedirs(os.path.join(root, "content"))
    config = tmp_path / "store.toml"
    config.write_text(minimal_config("store", root=root,
                                     master_url="http://127.0.0.1:{}".format(free_port())))
    result = subprocess.run([sys.executable, "-m", "stretchfs.cli.main", "inventory", "sync",
                             "--config", str(config)], capture_output=True, text=True,
                            timeout=60, env=dict(os.environ, PYTHONPATH=repo_root))
    assert result.returncode == 69
    assert "cannot download" in result.stdout
