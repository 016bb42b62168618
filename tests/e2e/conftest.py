"""Fixtures for end-to-end tests: real twistd processes, always torn down."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator

import pytest

from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.devcluster.cluster import LocalCluster, stop_detached
from stretchfs.devcluster.process import NodeProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is marked e2e."""
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def alive(pid: int) -> bool:
    """Process `pid` exists and is not a zombie."""
    try:
        with open("/proc/{}/status".format(pid)) as handle:
            return "State:\tZ" not in handle.read()
    except OSError:
        return False


def child_pids(pid: int) -> list[int]:
    """PIDs whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/{}/stat".format(entry)) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@pytest.fixture
def launch(tmp_path, repo_root: str) -> Iterator[Callable[..., NodeProcess]]:
    """Start `twistd stretchfs-<role>` with a config; every node is stopped afterwards.

    `logger` is passed as twistd's `--logger`; "" leaves it out.
    """
    started: list[NodeProcess] = []

    def start(role: str, config_text: str, name: str = "", wait: bool = True,
              logger: str = "stretchfs.logs.json_stdout") -> NodeProcess:
        name = name or "{}{}".format(role, len(started) + 1)
        config = tmp_path / (name + ".toml")
        config.write_text(config_text)
        env = {"PYTHONPATH": repo_root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        node = NodeProcess(role, name, str(config), str(tmp_path / (name + ".log")), env=env,
                           logger=logger)
        started.append(node)
        node.start()
        if wait:
            node.wait_listening(timeout=30)
        return node

    try:
        yield start
    finally:
        for node in reversed(started):
            node.stop(timeout=10)


@contextmanager
def running_cluster(workdir: str, repo_root: str, **options: Any) -> Iterator[ClusterHandle]:
    """A local cluster (`LocalCluster` options) in `workdir`, as `stretchfs dev up` starts
    it; afterwards every node is stopped, those the test restarted detached too."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = repo_root
    cluster = LocalCluster(workdir, say=lambda text: None, **options)
    try:
        cluster.up(timeout=90)
        yield ClusterHandle(workdir)
    finally:
        stop_detached(workdir, say=lambda text: None)
        cluster.down()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture
def dev_cluster(tmp_path, repo_root: str) -> Iterator[Callable[..., ClusterHandle]]:
    """Starts a local cluster for the test (`running_cluster` options, each in its own
    folder) and hands back its ClusterHandle; every one is stopped afterwards."""
    started: list[ClusterHandle] = []
    with ExitStack() as stack:
        def start(**options: Any) -> ClusterHandle:
            workdir = str(tmp_path / "cluster{}".format(len(started) + 1))
            started.append(stack.enter_context(running_cluster(workdir, repo_root, **options)))
            return started[-1]

        yield start


def netns_available() -> bool:
    """This process may create network namespaces and has nft (root, with nftables)."""
    probe = "sfs-probe-{}".format(os.getpid())
    try:
        added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    if added.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return subprocess.run(["which", "nft"], capture_output=True).returncode == 0


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@contextmanager
def cluster_in_netns(workdir: str, repo_root: str, prefix: str, *up_options: str,
                     up_timeout: float = 180) -> Iterator[Runner]:
    """`stretchfs dev up --detach` (with `up_options`) inside a network namespace of our
    own; yields `stretchfs(*args, timeout=)`, which runs the CLI inside it.  `dev down`
    and the namespace's deletion follow.  Skips the test where namespaces or nft are
    not permitted."""
    if not netns_available():
        pytest.skip("network namespaces or nft are not permitted here (needs root and nftables)")
    namespace = "{}-{}".format(prefix, os.getpid())
    env = dict(os.environ, PYTHONPATH=repo_root)
    inside = ["ip", "netns", "exec", namespace, sys.executable, "-m", "stretchfs.cli.main"]

    def stretchfs(*args: str, timeout: float) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(inside + list(args), capture_output=True, text=True,
                              timeout=timeout, env=env)

    subprocess.run(["ip", "netns", "add", namespace], check=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"],
                       check=True, timeout=10)
        up = stretchfs("dev", "up", *up_options, "--detach", "--workdir", workdir,
                       timeout=up_timeout)
        assert up.returncode == 0, up.stdout + up.stderr
        yield stretchfs
    finally:
        stretchfs("dev", "down", "--workdir", workdir, timeout=120)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
