"""The Python client against a real local cluster: upload, purchase, download with resume."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from stretchfs.client import Client, NotFound


def _stretchfs(*args: str, repo_root: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=repo_root)
    return subprocess.run([sys.executable, "-m", "stretchfs.cli.main", *args],
                          capture_output=True, text=True, timeout=180, env=env)


def test_client_round_trip_on_a_real_cluster(tmp_path, repo_root: str) -> None:
    """Upload 8 MiB from a path, buy it, download it through the redirect, resume a partial."""
    workdir = str(tmp_path / "cluster")
    up = _stretchfs("dev", "up", "--detach", "--prisms", "1", "--stores", "2",
                    "--workdir", workdir, repo_root=repo_root)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        with open(os.path.join(workdir, "cluster.json")) as handle:
            state = json.load(handle)
        source = tmp_path / "movie.mp4"
        data = os.urandom(8 * 1024 * 1024)
        source.write_bytes(data)
        sha1 = hashlib.sha1(data).hexdigest()
        with Client(state["prism_url"], state["user"]["username"],
                    state["user"]["password"], timeout=20) as client:
            content = client.upload(str(source))
            assert (content.hash, content.size, content.copies) == (sha1, len(data), 2)
            assert client.detail(sha1).count == 2
            bought = client.purchase(sha1, "mp4", life=300)
            link = client.download_url(bought, "movie.mp4")
            whole = client.download(link, tmp_path / "whole.mp4")
            assert whole.sha1 == sha1 and whole.resumed_from == 0
            partial = tmp_path / "partial.mp4"
            partial.write_bytes(data[:3_000_000])
            resumed = client.download(link, partial)
            assert resumed.resumed_from == 3_000_000 and partial.read_bytes() == data
            assert client.purchase_remove(bought.token) == 1
            try:
                client.download(link, tmp_path / "gone.mp4")
            except NotFound:
                pass
            else:
                raise AssertionError("a removed purchase's link still downloads")
    finally:
        _stretchfs("dev", "down", "--workdir", workdir, repo_root=repo_root)
