"""A local Redis behind Sentinel: a primary, two replicas and three Sentinels.

`stretchfs dev up --ha` starts these as real `redis-server` processes on
loopback, each in its own folder under `<workdir>/redis-ha/`.  Every server
loads the same ACL file (any of them may become the primary): the roles'
users, the Sentinels' user (`sentinel auth-user`) and the replicas' user
(`masteruser`), none of which may do more than its job (see redisacl.py).
The Sentinels take dev timings: a primary silent for a second is down, and a
failover that stalls is retried after a few seconds (production values:
docs/ha.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from stretchfs.devcluster.ports import free_port
from stretchfs.devcluster.redis_server import RedisProcess, connect, write_aclfile
from stretchfs.devcluster.redisacl import REPLICA_USER, SENTINEL_USER
from stretchfs.redisstore import RedisAddress, resp

SERVICE = "stretchfs"
REPLICAS = 2
SENTINELS = 3
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def replica_lines(passwords: dict[str, str], primary_port: int | None) -> list[str]:
    """redis.conf lines of one server: log in to a primary as the replicas' user (every
    server, since a demoted primary replicates too), and follow `primary_port` if given."""
    lines = ["repl-diskless-sync-delay 0",  # a (re)joining replica syncs at once
             "masteruser {}".format(REPLICA_USER),
             "masterauth {}".format(passwords[REPLICA_USER])]
    if primary_port:
        lines.append("replicaof 127.0.0.1 {}".format(primary_port))
    return lines


def sentinel_lines(primary_port: int, passwords: dict[str, str],
                   down_after_ms: int = DOWN_AFTER_MS) -> list[str]:
    """sentinel.conf of one Sentinel watching the primary on `primary_port`."""
    return [
        "sentinel resolve-hostnames no",
        "sentinel monitor {} 127.0.0.1 {} {}".format(SERVICE, primary_port, QUORUM),
        "sentinel down-after-milliseconds {} {}".format(SERVICE, down_after_ms),
        "sentinel failover-timeout {} {}".format(SERVICE, FAILOVER_TIMEOUT_MS),
        "sentinel parallel-syncs {} 1".format(SERVICE),
        "sentinel auth-user {} {}".format(SERVICE, SENTINEL_USER),
        "sentinel auth-pass {} {}".format(SERVICE, passwords[SENTINEL_USER]),
    ]


@dataclass
class RedisHA:
    """The processes of a local Redis behind Sentinel, in `folder`."""

    folder: str
    passwords: dict[str, str]
    admin_password: str
    prefix: str = "sfs:"
    down_after_ms: int = DOWN_AFTER_MS
    servers: list[RedisProcess] = field(default_factory=list)
    sentinels: list[RedisProcess] = field(default_factory=list)

    @property
    def sentinel_addresses(self) -> list[str]:
        """"host:port" of each Sentinel, for `[redis] sentinels`."""
        return ["127.0.0.1:{}".format(s.port) for s in self.sentinels]

    def start(self, detach: bool = False, timeout: float = 30.0) -> None:
        """Start the primary, its replicas (wait until they copy it), then the Sentinels
        (wait until each sees the replicas and the other Sentinels)."""
        primary_port = free_port()
        for index in range(1 + REPLICAS):
            folder = os.path.join(self.folder, "redis{}".format(index + 1))
            os.makedirs(folder, mode=0o700, exist_ok=True)
            aclfile = write_aclfile(os.path.join(folder, "users.acl"), self.prefix,
                                    self.passwords, self.admin_password)
            server = RedisProcess(folder, port=primary_port if index == 0 else 0,
                                  aclfile=aclfile, conf_lines=replica_lines(
                                      self.passwords, primary_port if index else None))
            self.servers.append(server)
            server.start(detach=detach)
        for index in range(SENTINELS):
            folder = os.path.join(self.folder, "sentinel{}".format(index + 1))
            os.makedirs(folder, mode=0o700, exist_ok=True)
            sentinel = RedisProcess(folder, sentinel=True,
                                    conf_lines=sentinel_lines(primary_port, self.passwords,
                                                              self.down_after_ms))
            self.sentinels.append(sentinel)
            sentinel.start(detach=detach)
        self._wait_settled(primary_port, timeout)

    def _wait_settled(self, primary_port: int, timeout: float) -> None:
        admin = RedisAddress(port=primary_port, password=self.admin_password)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            synced = _bulk(admin, "INFO", "replication").count("state=online") == REPLICAS
            if synced and all(self._sentinel_ready(s.port) for s in self.sentinels):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis replicas and Sentinels did not settle within {} s "
                           "(see {}/*/redis.log)".format(timeout, self.folder))

    @staticmethod
    def _sentinel_ready(port: int) -> bool:
        """The Sentinel on `port` knows the replicas and the other Sentinels."""
        address = RedisAddress(port=port)
        state = _sentinel_state(address)
        return (state.get("num-slaves") == str(REPLICAS)
                and state.get("num-other-sentinels") == str(SENTINELS - 1))

    def describe(self) -> dict[str, Any]:
        """The cluster.json `redis` entries of the servers and Sentinels."""
        def row(process: RedisProcess) -> dict[str, Any]:
            pid = process.process.pid if process.process is not None else None
            return {"pid": pid, "port": process.port, "folder": process.folder}
        return {"service": SERVICE, "sentinels": self.sentinel_addresses,
                "servers": [row(s) for s in self.servers],
                "sentinel_processes": [row(s) for s in self.sentinels]}

    def stop(self) -> None:
        """Stop the Sentinels first (no failover of a cluster going down), then the servers."""
        for process in reversed(self.sentinels + self.servers):
            process.stop()


def _sentinel_state(address: RedisAddress) -> dict[str, str]:
    """SENTINEL MASTER's fields for the service, or {} when the Sentinel does not answer."""
    try:
        with connect(address, 2.0) as sock, sock.makefile("rb") as replies:
            sock.sendall(resp(["SENTINEL", "MASTER", SERVICE]))
            head = replies.readline()
            if not head.startswith(b"*"):
                return {}
            items = []
            for _ in range(max(0, int(head[1:]))):
                size = int(replies.readline()[1:])
                items.append(replies.read(size + 2)[:-2].decode("utf-8", "replace"))
    except (OSError, ValueError):
        return {}
    return dict(zip(items[::2], items[1::2]))


def _bulk(address: RedisAddress, *args: str) -> str:
    """A bulk-string reply of one command (logging in first when `address` has a password),
    or '' when Redis does not answer with one."""
    try:
        return _bulk_reply(address, *args)
    except (OSError, ValueError):
        return ""


def _bulk_reply(address: RedisAddress, *args: str) -> str:
    commands = [list(args)]
    if address.password is not None:
        commands.insert(0, ["AUTH", address.password])
    with connect(address, 2.0) as sock, sock.makefile("rb") as replies:
        sock.sendall(b"".join(resp(command) for command in commands))
        if address.password is not None:
            replies.readline()
        head = replies.readline()
        if not head.startswith(b"$"):
            return ""
        return replies.read(int(head[1:]) + 2)[:-2].decode("utf-8", "replace")


def primary_port(sentinels: list[str]) -> int | None:
    """The port of the primary the first answering Sentinel names, or None."""
    for item in sentinels:
        host, _, port = item.rpartition(":")
        try:
            with connect(RedisAddress(host=host, port=int(port)), 2.0) as sock, \
                    sock.makefile("rb") as replies:
                sock.sendall(resp(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]))
                if replies.readline().startswith(b"*2"):
                    replies.readline()
                    replies.readline()
                    replies.readline()
                    return int(replies.readline().strip())
        except (OSError, ValueError):
            continue
    return None


def restart_server(row: dict[str, Any], timeout: float = 15.0) -> int:
    """Start a stopped server of cluster.json's `servers` again from its own (rewritten)
    config, detached; its new pid.  A former primary comes back as a replica: the
    Sentinels turn it into one."""
    folder = str(row["folder"])
    process = RedisProcess(folder, port=int(row["port"]), reuse_conf=True,
                           aclfile=os.path.join(folder, "users.acl"))
    process.start(timeout=timeout, detach=True)
    assert process.process is not None
    return process.process.pid


def ha_settled(sentinels: list[str], primary: int, admin_password: str) -> bool:
    """Sentinel can fail the primary on `primary` over now: every Sentinel is out of TILT
    mode (which it enters after a stall of its own and stays in for 30 s, acting on
    nothing) and sees the primary up with both replicas and the other Sentinels, and
    both replicas copy the primary."""
    expected = "status=ok,address=127.0.0.1:{},slaves={},sentinels={}".format(
        primary, REPLICAS, SENTINELS)
    for item in sentinels:
        host, _, port = item.rpartition(":")
        info = _bulk(RedisAddress(host=host, port=int(port)), "INFO", "sentinel")
        if "sentinel_tilt:0" not in info or expected not in info:
            return False
    admin = RedisAddress(port=primary, password=admin_password)
    return _bulk(admin, "INFO", "replication").count("state=online") == REPLICAS


def is_synced_replica(port: int, admin_password: str) -> bool:
    """The server on `port` is a replica whose link to its primary is up."""
    text = _bulk(RedisAddress(port=port, password=admin_password), "INFO", "replication")
    return "role:slave" in text and "master_link_status:up" in text
