"""`stretchfs dev up --detach` starts a whole local cluster; `dev down` stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stretchfs.devcluster.process import decode_json, http_call, http_get_json
from tests.e2e.conftest import alive


def _stretchfs(*args: str, repo_root: str, timeout: float = 180,
               redis_url: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=repo_root, REDIS_URL=redis_url)
    return subprocess.run([sys.executable, "-m", "stretchfs.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_dev_cluster_up_status_down(tmp_path, repo_root: str) -> None:
    """The detached cluster is healthy, described in cluster.json, and fully stopped by down."""
    workdir = str(tmp_path / "cluster")
    up = _stretchfs("dev", "up", "--detach", "--workdir", workdir, repo_root=repo_root)
    state_path = os.path.join(workdir, "cluster.json")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        with open(state_path) as handle:
            state = json.load(handle)
        roles = sorted(node["role"] for node in state["nodes"])
        assert roles == ["master", "prism", "prism", "store", "store", "store"]
        assert len({node["host"] for node in state["nodes"]}) == 6
        for node in state["nodes"]:
            assert http_get_json(node["url"] + "/health")[0] == 200
            assert os.path.exists(node["config"])
        assert state["redis"]["url"].startswith("redis://127.0.0.1:")
        status = _stretchfs("dev", "status", "--workdir", workdir, repo_root=repo_root)
        assert status.returncode == 0
        assert status.stdout.count(" ok") == 6
    finally:
        down = _stretchfs("dev", "down", "--workdir", workdir, repo_root=repo_root)
    assert down.returncode == 0
    pids = [node["pid"] for node in state["nodes"]] + [state["redis"]["pid"]]
    assert not [pid for pid in pids if alive(pid)]
    status = _stretchfs("dev", "status", "--workdir", workdir, repo_root=repo_root)
    assert status.returncode == 1


def test_second_up_in_the_same_workdir_is_refused(tmp_path, repo_root: str) -> None:
    """Starting a cluster where one already runs is refused, and the first keeps running."""
    workdir = str(tmp_path / "cluster")
    first = _stretchfs("dev", "up", "--detach", "--prisms", "1", "--stores", "1",
                       "--workdir", workdir, repo_root=repo_root)
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        second = _stretchfs("dev", "up", "--detach", "--workdir", workdir, repo_root=repo_root)
        assert second.returncode == 1
        assert "already running" in second.stdout
        assert _stretchfs("dev", "status", "--workdir", workdir,
                          repo_root=repo_root).returncode == 0
    finally:
        _stretchfs("dev", "down", "--workdir", workdir, repo_root=repo_root)


def _started_pids(workdir: str) -> list[int]:
    with open(os.path.join(workdir, "cluster.json")) as handle:
        state = json.load(handle)
    return [node["pid"] for node in state["nodes"]] + [state["redis"].get("pid")]


@pytest.mark.parametrize("redis", ["private", "REDIS_URL", "private, cluster.json lost"])
def test_up_down_up_in_the_same_workdir(tmp_path, repo_root: str, redis: str,
                                        redis_server) -> None:
    """A stopped cluster comes up again in its workdir with the same key and first user
    (new ones if cluster.json is gone), and an external REDIS_URL keeps data not ours."""
    workdir = str(tmp_path / "cluster")
    redis_url = ""
    if redis == "REDIS_URL":
        redis_server.flush()
        assert redis_server.command("SET", "not-stretchfs", "kept") == b"+OK"
        redis_url = redis_server.url
    up_args = ("dev", "up", "--detach", "--prisms", "1", "--stores", "1", "--workdir", workdir)
    pids: list[int] = []
    try:
        first = _stretchfs(*up_args, repo_root=repo_root, redis_url=redis_url)
        assert first.returncode == 0, first.stdout + first.stderr
        pids += _started_pids(workdir)
        with open(os.path.join(workdir, "cluster.json")) as handle:
            before = json.load(handle)
        assert _stretchfs("dev", "down", "--workdir", workdir,
                          repo_root=repo_root).returncode == 0
        assert not [pid for pid in pids if pid and alive(pid)]
        if redis == "private, cluster.json lost":
            os.remove(os.path.join(workdir, "cluster.json"))
        second = _stretchfs(*up_args, repo_root=repo_root, redis_url=redis_url)
        assert second.returncode == 0, second.stdout + second.stderr
        pids += _started_pids(workdir)
        with open(os.path.join(workdir, "cluster.json")) as handle:
            after = json.load(handle)
        reused = redis != "private, cluster.json lost"
        assert (after["cluster_key"] == before["cluster_key"]) == reused
        assert (after["user"] == before["user"]) == reused
        assert after["user"]["username"] == "admin"
        status, body = http_call("POST", after["prism_url"] + "/user/login", after["user"])
        assert status == 200 and decode_json(body)["session"]["token"]
    finally:
        down = _stretchfs("dev", "down", "--workdir", workdir, repo_root=repo_root)
    assert down.returncode == 0
    assert not [pid for pid in pids if pid and alive(pid)]
    status = _stretchfs("dev", "status", "--workdir", workdir, repo_root=repo_root)
    assert (status.returncode, status.stdout) == (1, "no cluster running in {}\n".format(workdir))
    if redis == "REDIS_URL":
        assert redis_server.command("STRLEN", "not-stretchfs") == b":4"
