"""Control of a local cluster started with `stretchfs dev up --detach`.

Signals go only to the PIDs recorded in cluster.json, after checking that
each PID still runs our config (so a recycled PID is never touched).
Restarted nodes are recorded back into cluster.json.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from stretchfs.devcluster.cluster import CLUSTER_FILE, _alive, load_state, write_private
from stretchfs.devcluster.process import NodeProcess, http_get_json


class ClusterHandle:
    """The nodes of a detached local cluster, and ways to hurt and heal them."""

    def __init__(self, workdir: str) -> None:
        state = load_state(workdir)
        if state is None:
            raise RuntimeError("no cluster in {} (start one with `stretchfs dev up --detach "
                               "--workdir {}`)".format(workdir, workdir))
        self.workdir = workdir
        self.state: dict[str, Any] = state

    # -- description -------------------------------------------------------
    def nodes(self, role: str | None = None) -> list[dict[str, Any]]:
        """Node records of cluster.json (of `role`)."""
        return [n for n in self.state["nodes"] if role is None or n["role"] == role]

    def node(self, name: str) -> dict[str, Any]:
        """The record of node `name`."""
        for node in self.state["nodes"]:
            if node["name"] == name:
                return node
        raise KeyError(name)

    @property
    def user(self) -> dict[str, str]:
        """The first user's credentials."""
        user = self.state.get("user")
        if not user:
            raise RuntimeError("the cluster has no first user")
        return user

    def _save(self) -> None:
        write_private(os.path.join(self.workdir, CLUSTER_FILE), json.dumps(self.state, indent=2))

    # -- processes ---------------------------------------------------------
    def is_running(self, name: str) -> bool:
        """True when node `name`'s recorded PID runs its config."""
        node = self.node(name)
        return _alive(node.get("pid"), node["config"])

    def signal(self, name: str, signum: int) -> None:
        """Send `signum` to node `name` if its PID is still ours."""
        node = self.node(name)
        if not _alive(node.get("pid"), node["config"]):
            raise RuntimeError("{} is not running".format(name))
        os.kill(node["pid"], signum)

    def wait_exit(self, name: str, timeout: float = 20.0) -> None:
        """Wait until node `name` has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.is_running(name):
            time.sleep(0.05)
        if self.is_running(name):
            raise RuntimeError("{} still running after {} s".format(name, timeout))

    def stop(self, name: str, timeout: float = 20.0) -> None:
        """TERM node `name` and wait for it to exit."""
        if self.is_running(name):
            self.signal(name, signal.SIGCONT)
            self.signal(name, signal.SIGTERM)
            self.wait_exit(name, timeout)

    def start(self, name: str, timeout: float = 60.0, wait_healthy: bool = True) -> None:
        """Start node `name` again with its config (detached), and wait until healthy."""
        node = self.node(name)
        if self.is_running(name):
            raise RuntimeError("{} is already running".format(name))
        process = NodeProcess(node["role"], name, node["config"], node["log"])
        process.start(detach=True)
        node["pid"] = process.pid
        self._save()
        process.wait_listening(timeout)
        if wait_healthy:
            process.wait_healthy(node["url"], timeout)

    def health(self, name: str) -> tuple[int, Any]:
        """GET /health of node `name`: (status, body); status 0 if unreachable."""
        return http_get_json(self.node(name)["url"] + "/health")

    # -- redis ---------------------------------------------------------------
    def redis_signal(self, signum: int) -> None:
        """Signal the cluster Redis (only one this cluster started)."""
        redis = self.state["redis"]
        if not redis.get("managed"):
            raise RuntimeError("the cluster uses an external Redis; refusing to touch it")
        port = redis["port"]
        if not _alive(redis.get("pid"), "--port {}".format(port), "127.0.0.1:{}".format(port)):
            raise RuntimeError("the cluster's redis-server is not running")
        os.kill(redis["pid"], signum)
