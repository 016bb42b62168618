"""The master as a real twistd process: CLI, users, peers, and surviving a Redis outage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from stretchfs.devcluster.redis_server import RedisProcess
from tests.helpers import CLUSTER_KEY, minimal_config


def call(base: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    """One JSON request with the cluster key; (status, decoded body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": "Bearer " + CLUSTER_KEY, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def stretchfs(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `stretchfs` CLI of this interpreter."""
    command = [sys.executable, "-m", "stretchfs.cli.main", *args]
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=full_env)


def test_cli_users_and_peers_against_a_real_master(launch, redis_url, tmp_path,
                                                   repo_root) -> None:
    """`stretchfs user/peer/purchase` talk to a twistd master configured by --config."""
    node = launch("master", minimal_config("master", redis_url=redis_url,
                                           extra="[master]\nbcrypt_rounds = 4\n"))
    base = "http://127.0.0.1:{}".format(node.port)
    config = str(tmp_path / "master1.toml")
    env = {"PYTHONPATH": repo_root}
    # the master listens on tcp:0, so its URL is given; the key comes from the config
    created = stretchfs("user", "create", "alice", "--config", config, "--master", base, env=env)
    assert created.returncode == 0, created.stderr
    password = [line.split(": ", 1)[1] for line in created.stdout.splitlines()
                if line.startswith("password: ")][0]
    status, answer = call(base, "POST", "/user/login", {"username": "alice",
                                                        "password": password})
    assert status == 200 and len(answer["session"]["token"]) == 64
    listed = stretchfs("user", "list", "--master", base,
                       env=dict(env, STRETCHFS_CLUSTER_KEY=CLUSTER_KEY))
    assert "alice" in listed.stdout
    assert call(base, "POST", "/peers/register", {"name": "store9", "role": "store",
                                                  "host": "127.0.0.9", "port": 9})[0] == 200
    update = stretchfs("peer", "update", "store9", "--inactive", "--config", config,
                       "--master", base, env=env)
    assert update.returncode == 0 and "active=no" in update.stdout
    assert call(base, "POST", "/peers/register", {"name": "store9", "role": "store",
                                                  "host": "127.0.0.9", "port": 9})[1][
        "active"] is False
    missing = stretchfs("peer", "remove", "nobody", "--master", base,
                        env=dict(env, STRETCHFS_CLUSTER_KEY=CLUSTER_KEY))
    assert missing.returncode == 1 and "no peer named nobody" in missing.stderr
    pruned = stretchfs("purchase", "prune", "--config", config, "--master", base, env=env)
    assert pruned.returncode == 0 and "pruned 0" in pruned.stdout
    node.stop()
    assert node.shut_down_cleanly()


def test_master_answers_503_while_redis_is_down_and_recovers(launch, tmp_path) -> None:
    """Writes answer 503 while the cluster Redis is down and work again once it is back."""
    redis = RedisProcess(str(tmp_path / "redis"), appendonly=True)
    redis.start()
    try:
        node = launch("master", minimal_config("master", redis_url=redis.url,
                                               extra="[master]\nbcrypt_rounds = 4\n"))
        base = "http://127.0.0.1:{}".format(node.port)
        node.wait_healthy(base, timeout=15)
        assert call(base, "POST", "/users", {"username": "before"})[0] == 201
        redis.stop()
        status, answer = call(base, "POST", "/users", {"username": "during"})
        assert status == 503 and "Redis" in answer["error"]
        port = redis.port
        redis = RedisProcess(str(tmp_path / "redis"), port=port, appendonly=True)
        redis.start()
        deadline = time.monotonic() + 20
        status = 0
        while time.monotonic() < deadline:
            status, answer = call(base, "POST", "/users", {"username": "after"})
            if status == 201:
                break
            time.sleep(0.2)
        assert status == 201
        users = [u["username"] for u in call(base, "GET", "/users")[1]["users"]]
        assert users == ["after", "before"]
        node.stop()
        assert node.shut_down_cleanly()
    finally:
        redis.stop()
