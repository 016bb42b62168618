"""Run one role as a real `twistd` process and watch its JSON log.

Used by `stretchfs dev`, by the end-to-end tests and by the benchmarks, so
all three start nodes exactly the way an operator's systemd unit does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


def stop_process(process: subprocess.Popen[Any] | None, timeout: float) -> int | None:
    """TERM a child we started, KILL it after `timeout`; its exit code (None if never run)."""
    if process is None:
        return None
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


def twistd_command() -> list[str]:
    """The twistd launcher that belongs to this Python interpreter."""
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(beside, os.X_OK):
        return [beside]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def read_events(log_path: str) -> list[dict[str, Any]]:
    """Every JSON log event written so far to `log_path` (other lines skipped)."""
    events = []
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("{"):
                    try:
                        events.append(json.loads(line))
                    except ValueError:
                        continue
    except FileNotFoundError:
        pass
    return events


def http_call(method: str, url: str, body: Any = None, *, data: bytes | None = None,
              key: str = "", headers: dict[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, bytes]:
    """One blocking request (JSON `body` or raw `data`, cluster `key` if given):
    (status, body bytes); status 0 when the node is unreachable."""
    sent = dict(headers or {})
    if key:
        sent["Authorization"] = "Bearer " + key
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def decode_json(data: bytes) -> Any:
    """A reply body as JSON (None when empty or not JSON)."""
    try:
        return json.loads(data or b"null")
    except ValueError:
        return None


def http_get_json(url: str, timeout: float = 2.0, key: str = "") -> tuple[int, Any]:
    """GET `url` (with the cluster `key` if given); (status, JSON or None); 0 if unreachable."""
    status, data = http_call("GET", url, key=key, timeout=timeout)
    return status, decode_json(data)


@dataclass
class NodeProcess:
    """One `twistd stretchfs-<role>` child with its log file."""

    role: str
    name: str
    config_path: str
    log_path: str
    env: dict[str, str] = field(default_factory=dict)
    logger: str = "stretchfs.logs.json_stdout"
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self, detach: bool = False) -> None:
        """Spawn the process; its stdout and stderr go to `log_path`.

        `logger` is twistd's `--logger` (none when empty: the config's
        `[log] format` decides).
        """
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        args = twistd_command() + ["--nodaemon", "--pidfile="]
        if self.logger:
            args.append("--logger=" + self.logger)
        args += ["stretchfs-{}".format(self.role), "--config", self.config_path]
        env = dict(os.environ)
        env.update(self.env)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, env=env,
                                            start_new_session=detach)

    @property
    def pid(self) -> int:
        """PID of the running child."""
        assert self.process is not None
        return self.process.pid

    def events(self) -> list[dict[str, Any]]:
        """The JSON log events this node has written."""
        return read_events(self.log_path)

    def wait_listening(self, timeout: float = 30.0) -> int:
        """Wait for the "listening" log event; returns the bound HTTP port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == "listening":
                    self.port = int(event["port"])
                    return self.port
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError("{} exited with {} before listening; log: {}".format(
                    self.name, self.process.returncode, self.log_path))
            time.sleep(0.05)
        raise RuntimeError("{} not listening after {} s; log: {}".format(
            self.name, timeout, self.log_path))

    def wait_healthy(self, base_url: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until GET /health answers 200; returns its body."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            status, body = http_get_json(base_url + "/health")
            if status == 200:
                return body
            last = body
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError("{} exited with {}; log: {}".format(
                    self.name, self.process.returncode, self.log_path))
            time.sleep(0.1)
        raise RuntimeError("{} not healthy after {} s: {}".format(self.name, timeout, last))

    def signal(self, signum: int) -> None:
        """Send `signum` to the child (only if it is still ours and alive)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 15.0) -> int | None:
        """TERM the child (continuing it if stopped), KILL it after `timeout`; its exit code."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        return stop_process(self.process, timeout)

    def shut_down_cleanly(self) -> bool:
        """True when the log shows twistd's orderly "Server Shut Down."."""
        return any(e.get("text") == "Server Shut Down." for e in self.events())
