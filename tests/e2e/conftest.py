"""Fixtures for end-to-end tests: real twistd processes, always torn down."""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest

from stretchfs.devcluster.process import NodeProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is marked e2e."""
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


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
