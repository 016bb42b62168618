"""The client commands' settings: where the prism and credentials come from, the session file."""

from __future__ import annotations

import argparse
import json
import os
import stat

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
