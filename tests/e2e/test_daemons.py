"""Each role starts as a real twistd process, answers, and stops cleanly."""

from __future__ import annotations

import socket
import subprocess

import pytest

from stretchfs.devcluster.process import http_get_json, twistd_command
from stretchfs.exitcodes import EX_CONFIG, EX_LISTEN
from tests.helpers import CLUSTER_KEY, minimal_config


@pytest.mark.parametrize("role", ["master", "prism", "store"])
def test_role_starts_answers_and_stops_on_sigterm(role: str, launch, redis_url,
                                                  tmp_path) -> None:
    """twistd stretchfs-<role> listens, answers /ping /health /metrics, and shuts down on TERM."""
    node = launch(role, minimal_config(role, redis_url=redis_url, root=str(tmp_path / "data")))
    base = "http://127.0.0.1:{}".format(node.port)
    assert http_get_json(base + "/ping") == (200, {"pong": "pong"})
    if role == "prism":
        # A prism is ready only once it holds the master's snapshots (no master here).
        status, body = http_get_json(base + "/health")
        assert status == 503 and "snapshot" in body["error"] and body["role"] == role
    else:
        node.wait_healthy(base, timeout=15)
        status, body = http_get_json(base + "/health")
        assert status == 200 and body["status"] == "ok" and body["role"] == role
    import urllib.request

    with urllib.request.urlopen(base + "/metrics", timeout=5) as reply:
        assert b"process_resident_memory_bytes" in reply.read()
    node.stop()
    assert node.shut_down_cleanly()


def test_master_health_is_503_without_redis(launch) -> None:
    """A master whose Redis is unreachable runs but reports 503 with the reason."""
    from stretchfs.devcluster.ports import free_port

    node = launch("master", minimal_config(
        "master", redis_url="redis://127.0.0.1:{}/0".format(free_port())))
    status, body = http_get_json("http://127.0.0.1:{}/health".format(node.port))
    assert status == 503
    assert "Redis" in body["error"]


@pytest.mark.parametrize("role", ["prism", "store"])
def test_role_that_cannot_listen_exits_at_once(role: str, launch, redis_url, tmp_path) -> None:
    """A role whose HTTP port is taken exits at once with EX_LISTEN, and its log says why;
    it never runs half alive (its ping net answering while nobody serves HTTP)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = minimal_config(role, redis_url=redis_url, root=str(tmp_path / "data"))
        node = launch(role, config.replace("tcp:0:", "tcp:{}:".format(port)), wait=False)
        assert node.process is not None
        try:
            code = node.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("{} still running with its port taken; log: {}".format(
                role, node.log_path))
    assert code == EX_LISTEN
    failed = [e for e in node.events() if e.get("event") == "listen_failed"]
    assert len(failed) == 1 and str(port) in failed[0]["endpoint"], node.events()
    assert "in use" in failed[0]["error"].lower()
    assert not any(e.get("event") == "pingnet_listening" for e in node.events())


def test_json_log_format_works_without_the_logger_option(launch, redis_url) -> None:
    """With `[log] format = "json"` and no --logger, twistd starts and writes JSON log lines."""
    node = launch("master", minimal_config("master", redis_url=redis_url,
                                           extra='[log]\nformat = "json"\n'), logger="")
    assert http_get_json("http://127.0.0.1:{}/ping".format(node.port)) == (200, {"pong": "pong"})
    node.stop()
    assert node.shut_down_cleanly()


BAD = [
    ("[node]\nname = 'x'\nspeed = 3\n", "[node] speed: unknown key"),
    ("[http]\nlisten = 8080\n", "[http] listen: expected an endpoint string or a list"),
    ("[redis]\nurl = 'mysql://x'\n", "[redis] url: expected redis://"),
    ("[ping]\ninterval = -1\n", "[ping] interval: expected a number greater than 0"),
    ("[prism]\nmin_copies = 'two'\n", "[prism] min_copies: expected an integer"),
    ("[cluster]\nkey = 'short'\n", "[cluster] key: expected at least 32 characters"),
    ("[cluster]\nkey = 'change-me-to-a-long-random-secret'\n",
     "[cluster] key: the example key is public"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_config_stops_twistd_with_one_line(tmp_path, repo_root: str, text: str,
                                               message: str) -> None:
    """A bad config makes twistd exit 78 with one stderr line naming file and key."""
    path = tmp_path / "prism.toml"
    key = "" if "[cluster]" in text else "[cluster]\nkey = '{}'\n".format(CLUSTER_KEY)
    path.write_text(text + key)
    result = subprocess.run(
        twistd_command() + ["--nodaemon", "--pidfile=", "stretchfs-prism", "-c", str(path)],
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": repo_root,
                                                         "PATH": "/usr/bin:/bin"})
    assert result.returncode == EX_CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stretchfs-prism: {}: ".format(path))
    assert message in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_config_file_stops_twistd(tmp_path, repo_root: str) -> None:
    """A config path that does not exist gives one line and exit 78."""
    result = subprocess.run(
        twistd_command() + ["--nodaemon", "--pidfile=", "stretchfs-store", "-c",
                            str(tmp_path / "absent.toml")],
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": repo_root})
    assert result.returncode == EX_CONFIG
    assert result.stderr.strip() == "stretchfs-store: {}: no such file".format(
        tmp_path / "absent.toml")


def test_twistd_help_lists_the_three_roles(repo_root: str) -> None:
    """`twistd --help` lists stretchfs-master, -prism and -store."""
    result = subprocess.run(twistd_command() + ["--help"], capture_output=True, text=True,
                            timeout=60, env={"PYTHONPATH": repo_root})
    for role in ("master", "prism", "store"):
        assert "stretchfs-" + role in result.stdout
