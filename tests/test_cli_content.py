"""The client commands' settings: where the prism and credentials come from, the session file."""

from __future__ import annotations

import argparse
import json
import os
import stat

import pytest

from stretchfs.cli import content
from stretchfs.master.cliconn import add_master_arguments


def _parser(prune_calls: list[argparse.Namespace]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    content.add_parsers(sub, lambda args: prune_calls.append(args) or 0, add_master_arguments)
    return parser


def test_flags_beat_environment_beat_saved_session_beat_config(tmp_path, monkeypatch) -> None:
    """Each setting comes from the first of: flag, environment, session.json, client.toml."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in content.ENV.values():
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "stretchfs").mkdir()
    (tmp_path / "stretchfs" / "client.toml").write_text(
        'url = "https://from-config"\nusername = "carol"\npassword = "pw-config"\n')
    args = _parser([]).parse_args(["detail", "a" * 40])
    assert content.resolve(args) == {"url": "https://from-config", "username": "carol",
                                     "password": "pw-config", "token": None}
    content.save_session("https://from-config", "carol", "t" * 64)
    assert content.resolve(args)["token"] == "t" * 64
    monkeypatch.setenv("STRETCHFS_URL", "https://from-env")
    monkeypatch.setenv("STRETCHFS_USER", "dave")
    found = content.resolve(args)
    assert (found["url"], found["username"], found["token"]) == ("https://from-env", "dave",
                                                                 None)
    args = _parser([]).parse_args(["detail", "a" * 40, "--url", "https://from-flag",
                                   "--user", "erin"])
    assert (content.resolve(args)["url"], content.resolve(args)["username"]) == (
        "https://from-flag", "erin")


def test_the_saved_session_is_readable_by_its_owner_only(tmp_path, monkeypatch) -> None:
    """session.json is written 0600 in a 0700 folder and holds the URL, user and token."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    path = content.save_session("https://prism", "alice", "s" * 64)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(path) as handle:
        assert json.load(handle) == {"url": "https://prism", "username": "alice",
                                     "token": "s" * 64}


def test_purchase_prune_stays_the_operators_command() -> None:
    """`purchase prune` goes to the master's prune; `purchase HASH` buys a link."""
    calls: list[argparse.Namespace] = []
    parser = _parser(calls)
    args = parser.parse_args(["purchase", "prune", "--master", "http://m:1"])
    assert args.func(args) == 0 and calls and calls[0].master == "http://m:1"
    args = parser.parse_args(["purchase", "a" * 40, "--life", "60", "--referrer", "x.com"])
    assert (args.hash, args.life, args.referrer) == ("a" * 40, 60.0, ["x.com"])


class _Bar:
    """Records what a progress bar is told."""

    def __init__(self) -> None:
        self.updates: list[int] = []

    def update(self, count: int) -> None:
        self.updates.append(count)


def test_each_upload_adds_its_new_bytes_to_the_one_bar(capsys) -> None:
    """Off a terminal there is no bar and no callback; on one, each upload adds its new bytes."""
    assert content._bar(10, "upload") is None and content._adding_to(None) is None
    bar = _Bar()
    first, second = content._adding_to(bar), content._adding_to(bar)
    assert first is not None and second is not None
    first(100, 300)
    second(50, 60)
    first(300, 300)
    second(60, 60)
    assert bar.updates == [100, 50, 200, 10]
    assert capsys.readouterr().err == ""


def test_in_parallel_runs_at_most_jobs_at_once_and_reports_each_outcome() -> None:
    """Every item ends once, as a result or its StretchFSError; no more than `jobs` run at once."""
    import threading

    from stretchfs.client import NotFound

    lock = threading.Lock()
    running, peak = [0], [0]
    release = threading.Event()

    def work(item: str) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            if running[0] == 3:
                release.set()
        release.wait(10)
        with lock:
            running[0] -= 1
        if item.startswith("bad"):
            raise NotFound("no " + item, 404)
        return item.upper()

    items = ["a", "bad1", "c", "d", "bad2", "f", "g"]
    outcomes = dict(content.in_parallel(items, 3, work))
    assert peak[0] == 3
    assert {items[i]: (o.message if isinstance(o, NotFound) else o)
            for i, o in outcomes.items()} == {
        "a": "A", "bad1": "no bad1", "c": "C", "d": "D", "bad2": "no bad2", "f": "F", "g": "G"}


def test_in_parallel_hands_other_exceptions_to_the_caller() -> None:
    """A bug in the work (not a StretchFSError) is raised in the calling thread."""
    def work(item: str) -> str:
        raise KeyError(item)

    with pytest.raises(KeyError, match="x"):
        list(content.in_parallel(["x"], 2, work))


def test_a_client_command_loads_no_master_code_httpx_or_tls(tmp_path) -> None:
    """`stretchfs upload` (parsed and its client built for http) imports only what it needs."""
    import subprocess
    import sys

    probe = (
        "import sys, argparse\n"
        "from stretchfs.cli.main import build_parser\n"
        "from stretchfs.client import Client\n"
        "args = build_parser('upload').parse_args(['upload', 'f'])\n"
        "Client('http://127.0.0.1:1', token='t' * 64).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('httpx', 'ssl', 'twisted', 'concurrent', 'logging', 'tomllib')"
        " or m.startswith(('stretchfs.master', 'stretchfs.config'))))\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=repo), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
