"""`stretchfs dev status|down` when no cluster runs in the work folder."""

from __future__ import annotations

import argparse
import json

import pytest

from stretchfs.cli.dev import run_down, run_status

STOPPED_STATE = {
    "nodes": [{"name": "master", "role": "master", "url": "http://127.0.0.1:1",
               "config": "/nowhere/master.toml", "pid": None}],
    "redis": {"url": "redis://127.0.0.1:1/0", "managed": True, "pid": None, "port": 1},
}


@pytest.fixture(params=["never started", "stopped"])
def idle_workdir(request, tmp_path) -> str:
    """A work folder without cluster.json, or with one whose processes are all gone."""
    if request.param == "stopped":
        (tmp_path / "cluster.json").write_text(json.dumps(STOPPED_STATE))
    return str(tmp_path)


def test_status_without_a_cluster_is_one_line(idle_workdir: str, capsys) -> None:
    """`dev status` with nothing running prints one line saying so and exits 1."""
    assert run_status(argparse.Namespace(workdir=idle_workdir)) == 1
    assert capsys.readouterr().out == "no cluster running in {}\n".format(idle_workdir)


def test_down_without_a_cluster_is_one_line(idle_workdir: str, capsys) -> None:
    """`dev down` with nothing running prints one line saying so and exits 0."""
    assert run_down(argparse.Namespace(workdir=idle_workdir)) == 0
    assert capsys.readouterr().out == "no cluster running in {}\n".format(idle_workdir)
