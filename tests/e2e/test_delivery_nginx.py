"""`stretchfs dev up --nginx --prism-workers 2`: purchased downloads through nginx, from
either prism worker; `dev down` stops every process, and a dead worker stops its prism."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from stretchfs.devcluster.nginx import nginx_binary
from stretchfs.devcluster.process import decode_json, http_call, read_events
from tests.e2e.conftest import alive, child_pids

pytestmark = pytest.mark.skipif(nginx_binary() is None,
                                reason="nginx is not installed (apt-get install nginx)")


def _stretchfs(*args: str, repo_root: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stretchfs.cli.main", *args],
                          capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, PYTHONPATH=repo_root))


def _upload(prism: str, token: str, data: bytes) -> str:
    boundary = "e2eBoundary16"
    body = ('--{}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
            'Content-Type: text/plain\r\n\r\n').format(boundary).encode() + data + \
        "\r\n--{}--\r\n".format(boundary).encode()
    status, reply = http_call("POST", prism + "/content/upload", data=body, headers={
        "X-STRETCHFS-Token": token,
        "Content-Type": "multipart/form-data; boundary=" + boundary})
    assert status == 200, reply
    return str(decode_json(reply)["files"]["file"]["hash"])


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    """One GET on a new connection, redirects not followed."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", parts.path + ("?" + parts.query if parts.query else ""))
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def test_purchased_downloads_through_nginx_from_two_prism_workers(tmp_path,
                                                                  repo_root: str) -> None:
    """Every redirect of a purchase, answered by either worker, points at a store's
    nginx, which serves the bytes; killing a worker stops the prism; down stops all."""
    workdir = str(tmp_path / "cluster")
    up = _stretchfs("dev", "up", "--detach", "--workdir", workdir, "--prisms", "1",
                    "--stores", "2", "--nginx", "--prism-workers", "2", repo_root=repo_root)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        with open(os.path.join(workdir, "cluster.json")) as handle:
            state = json.load(handle)
        fronts = {urlsplit(front["url"]).netloc for front in state["nginx"]}
        assert len(fronts) == 2 and all(alive(front["pid"]) for front in state["nginx"])
        prism = next(node for node in state["nodes"] if node["role"] == "prism")
        worker_pids = child_pids(prism["pid"])
        assert len(worker_pids) == 1 and state["prism_workers"] == 2
        status, reply = http_call("POST", prism["url"] + "/user/login", state["user"])
        assert status == 200
        token = decode_json(reply)["session"]["token"]
        data = os.urandom(4096)
        sha1 = _upload(prism["url"], token, data)
        assert sha1 == hashlib.sha1(data).hexdigest()
        status, reply = http_call("POST", prism["url"] + "/content/purchase",
                                  {"hash": sha1, "ext": "txt", "referrer": []},
                                  headers={"X-STRETCHFS-Token": token})
        assert status == 200, reply
        purchase = decode_json(reply)["token"]
        targets = set()
        # 30 new connections: with SO_REUSEPORT both workers answer some (all on one
        # worker has probability 2**-29), and a worker without the peer table would 503.
        for _ in range(30):
            status, headers, _ = _get("{}/{}/a.txt".format(prism["url"], purchase))
            assert status == 302, headers
            targets.add(headers["Location"])
            assert urlsplit(headers["Location"]).netloc in fronts
        for location in targets:
            status, headers, body = _get(location)
            assert (status, headers.get("Server"), body) == (200, "nginx", data)
        os.kill(worker_pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while alive(prism["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(prism["pid"]), "the prism kept running without its worker"
        exited = [e for e in read_events(prism["log"]) if e.get("event") == "worker_exited"]
        assert [e["worker"] for e in exited] == [2]
    finally:
        down = _stretchfs("dev", "down", "--workdir", workdir, repo_root=repo_root)
    assert down.returncode == 0
    pids = [node["pid"] for node in state["nodes"]] + [f["pid"] for f in state["nginx"]]
    assert not [pid for pid in pids + worker_pids if alive(pid)]
