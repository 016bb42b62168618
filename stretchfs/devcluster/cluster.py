"""A whole local cluster: private Redis, one or more masters, prisms and stores.

Every node is a real `twistd` process with a generated config in the work
folder, listening on its own loopback address (127.0.0.2, .3, ...) so that
"distinct hosts" means something even on one machine.  The state of a
running cluster is written to `<workdir>/cluster.json` for scripts, tests,
`stretchfs dev down|status` and `stretchfs chaos`; with the configs it holds
the cluster key, so both are created 0600 in a 0700 work folder.

Prisms serve HTTPS as well as plain HTTP: `up` makes a private CA
(`<workdir>/tls/ca.pem`, new at every `up`) and a certificate per prism
(keys 0600), and every node trusts that CA through `[tls] ca_file`.  The
master and the stores serve plain HTTP on their loopback addresses (see
docs/https.md).  A later
`up` in the same folder reuses that key and first user (Redis's data and the
stores' content carry over); without a cluster.json it starts clean.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from stretchfs.config import RedisSettings, cluster_key_problem
from stretchfs.devcluster.nginx import NOT_INSTALLED, NginxProcess, nginx_binary, store_front
from stretchfs.devcluster.process import NodeProcess, decode_json, http_call, http_get_json
from stretchfs.devcluster.redis_server import (
    RedisProcess,
    create_users,
    login_url,
    new_passwords,
    write_aclfile,
)
from stretchfs.devcluster.redisacl import MASTER_USER, NODE_USER
from stretchfs.devcluster.sentinel import SERVICE, RedisHA
from stretchfs.devcluster.tls import make_dev_ca, ssl_endpoint, write_file
from stretchfs.redisstore import parse_redis_url
from stretchfs.wire.signing import delivery_secret

CLUSTER_FILE = "cluster.json"
REDIS_PREFIX = RedisSettings().prefix
FIRST_USER = "admin"
# A store voted down this long is lost and its copies are made again (production: 15 min).
DEV_LOST_AFTER_SECONDS = 60.0
# The masters' leases (repair planner, purchase pruning; production: 15 s): with several
# masters, another takes a dead one's jobs over within 4/3 of this.
DEV_LEASE_TTL_SECONDS = 6.0
MAX_MASTERS = 9


def _free_port_on(host: str, kind: int, wanted: int = 0) -> int:
    """`wanted` when it is free on `host`, else any free port."""
    for port in ((wanted, 0) if wanted else (0,)):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port on {}".format(host))


def _port_of(url: Any) -> int:
    """The port of a saved node URL (0 when there is none)."""
    return urlsplit(url).port or 0 if isinstance(url, str) and url else 0


@dataclass
class NodeSpec:
    """Where one node of the local cluster lives and listens."""

    name: str
    role: str
    host: str
    port: int
    ping_port: int
    zone: str
    config: str = ""
    log: str = ""
    root: str = ""
    tls_port: int = 0
    cert_file: str = ""
    key_file: str = ""

    @property
    def url(self) -> str:
        """Base HTTP URL of the node."""
        return "http://{}:{}".format(self.host, self.port)

    @property
    def https_url(self) -> str | None:
        """Base HTTPS URL of the node (prisms), else None."""
        return "https://{}:{}".format(self.host, self.tls_port) if self.tls_port else None

    @property
    def listen(self) -> list[str]:
        """The node's `[http] listen` endpoints: plain HTTP first (its registered URL)."""
        endpoints = ["tcp:{}:interface={}".format(self.port, self.host)]
        if self.tls_port:
            endpoints.append(ssl_endpoint(self.tls_port, self.host, self.cert_file,
                                          self.key_file))
        return endpoints


def plan_nodes(workdir: str, prisms: int, stores: int,
               previous: list[dict[str, Any]] | None = None,
               masters: int = 1) -> list[NodeSpec]:
    """Names, loopback addresses, free ports and zones for every node: the masters
    (master, master2, ...) first.

    A node of the `previous` run (cluster.json's `nodes`) keeps its ports when
    they are still free, so the registry in the kept Redis, and every node's
    copy of it, still points at the right addresses after a restart.
    """
    before = {str(n.get("name")): n for n in previous or []}
    roles = [("master", "master{}".format(i + 1) if i else "master") for i in range(masters)]
    roles += [("prism", "prism{}".format(i + 1)) for i in range(prisms)]
    roles += [("store", "store{}".format(i + 1)) for i in range(stores)]
    zones = "abc"
    nodes = []
    seen: dict[str, int] = {}
    for index, (role, name) in enumerate(roles):
        host = "127.0.0.{}".format(index + 1)
        number = seen.get(role, 0)
        seen[role] = number + 1
        tls = role == "prism"
        last = before.get(name, {})
        nodes.append(NodeSpec(
            name=name, role=role, host=host,
            port=_free_port_on(host, socket.SOCK_STREAM, _port_of(last.get("url"))),
            ping_port=(_free_port_on(host, socket.SOCK_DGRAM, int(last.get("ping_port") or 0))
                       if role != "master" else 0),
            zone=zones[number % len(zones)],
            config=os.path.join(workdir, "etc", name + ".toml"),
            log=os.path.join(workdir, "log", name + ".log"),
            root=os.path.join(workdir, "data", name) if role == "store" else "",
            tls_port=(_free_port_on(host, socket.SOCK_STREAM, _port_of(last.get("https_url")))
                      if tls else 0),
            cert_file=os.path.join(workdir, "tls", name + ".pem") if tls else "",
            key_file=os.path.join(workdir, "tls", name + ".key") if tls else ""))
    return nodes


def render_config(node: NodeSpec, master_urls: list[str], redis_url: str, cluster_key: str,
                  redis_password: str = "", ca_file: str = "",
                  lost_after: float = DEV_LOST_AFTER_SECONDS,
                  sentinels: list[str] | None = None, public_url: str = "",
                  workers: int = 1) -> str:
    """The TOML config of one node of the local cluster (every node lists every master;
    Redis behind `sentinels`, when given; `public_url`: a store's nginx, `workers`: a
    prism's `[http] workers`)."""
    lines = [
        "# generated by `stretchfs dev up`",
        "[node]",
        'name = "{}"'.format(node.name),
        'site = "local"',
        'zone = "{}"'.format(node.zone),
        'host = "{}"'.format(node.host),
        "",
        "[http]",
        "listen = {}".format(json.dumps(node.listen)),
        *(['public_url = "{}"'.format(public_url)] if public_url else []),
        *(["workers = {}".format(workers)] if workers > 1 else []),
        "",
        "[tls]",
        "ca_file = {}".format(json.dumps(ca_file)),
        "",
        "[cluster]",
        'key = "{}"'.format(cluster_key),
        "master_urls = {}".format(json.dumps(master_urls)),
        "",
        "[redis]",
        'url = "{}"'.format(redis_url),
        'password = "{}"'.format(redis_password),
    ]
    if sentinels:
        lines += ['sentinels = "{}"'.format(", ".join(sentinels)),
                  'service = "{}"'.format(SERVICE)]
    lines += [
        "",
        "[log]",
        'format = "json"',
    ]
    if node.role != "master":
        lines += ["", "[ping]", "port = {}".format(node.ping_port)]
    if node.role == "store":
        lines += ["", "[store]", 'root = "{}"'.format(node.root), 'min_free = "64 MiB"']
    if node.role == "master":
        lines += ["", "[master]", "prune_interval = 3600.0",
                  "lease_ttl = {!r}".format(DEV_LEASE_TTL_SECONDS),
                  "", "[repair]", "lost_after = {!r}".format(float(lost_after)),
                  "lease_ttl = {!r}".format(DEV_LEASE_TTL_SECONDS)]
    return "\n".join(lines) + "\n"


@dataclass
class LocalCluster:
    """Start, describe and stop a local cluster in `workdir`."""

    workdir: str
    prisms: int = 2
    stores: int = 3
    masters: int = 1
    redis_url: str = ""
    say: Callable[[str], None] = print
    nodes: list[NodeSpec] = field(default_factory=list)
    processes: dict[str, NodeProcess] = field(default_factory=dict)
    redis: RedisProcess | None = None
    cluster_key: str = ""
    user: dict[str, str] | None = None
    redis_acl: bool = False
    redis_admin_password: str = ""
    lost_after: float = DEV_LOST_AFTER_SECONDS
    # A Redis primary with replicas behind three Sentinels instead of one Redis.
    ha: bool = False
    redis_ha: RedisHA | None = None
    # -- stretchfs dev up --nginx / --prism-workers (delivery speed, issue 16) --
    nginx: bool = False
    prism_workers: int = 1
    fronts: dict[str, NginxProcess] = field(default_factory=dict)

    @property
    def state_path(self) -> str:
        """Path of cluster.json."""
        return os.path.join(self.workdir, CLUSTER_FILE)

    def up(self, detach: bool = False, timeout: float = 90.0) -> dict[str, Any]:
        """Start everything and wait until every node is healthy."""
        self.workdir = os.path.abspath(self.workdir)
        if self.nginx and nginx_binary() is None:
            raise RuntimeError("--nginx: " + NOT_INSTALLED)
        previous = load_state(self.workdir) or {}
        if running_processes(previous):
            raise RuntimeError("a cluster is already running in {} (stretchfs dev down "
                               "--workdir {})".format(self.workdir, self.workdir))
        self.prepare_workdir()
        saved_key = str(previous.get("cluster_key") or "")
        self.cluster_key = saved_key if not cluster_key_problem(saved_key) else \
            secrets.token_urlsafe(32)
        try:
            self._start(detach, timeout, previous.get("user"), previous.get("nodes"))
        except BaseException:
            self.down()
            raise
        return self.save_state()

    def prepare_workdir(self) -> None:
        """Create the work folder, for its owner only (it holds the key and Redis's data)."""
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)

    @property
    def ca_file(self) -> str:
        """The private CA's certificate (PEM), for `curl --cacert` and `[tls] ca_file`."""
        return os.path.join(self.workdir, "tls", "ca.pem")

    def write_configs(self, logins: dict[str, tuple[str, str]]) -> None:
        """Write a new private CA, a certificate per TLS node, and the TOML config of
        every planned node with its role's Redis login (0600: it holds the cluster
        key and a Redis password)."""
        master_urls = self.master_urls
        ca = make_dev_ca(os.path.dirname(self.ca_file),
                         datetime.datetime.now(datetime.timezone.utc))
        for node in self.nodes:
            if node.tls_port:
                ca.issue(os.path.dirname(node.cert_file), node.name, node.host,
                         datetime.datetime.now(datetime.timezone.utc))
            os.makedirs(os.path.dirname(node.config), mode=0o700, exist_ok=True)
            url, password = logins[MASTER_USER if node.role == "master" else NODE_USER]
            sentinels = self.redis_ha.sentinel_addresses if self.redis_ha else None
            front = self.fronts.get(node.name)
            write_private(node.config, render_config(
                node, master_urls, url, self.cluster_key, password, ca.ca_file, self.lost_after,
                sentinels, public_url="http://{}:{}".format(front.host, front.port) if front
                else "", workers=self.prism_workers if node.role == "prism" else 1))

    @property
    def master_urls(self) -> list[str]:
        """The base URL of every planned master, in order."""
        return [node.url for node in self.nodes if node.role == "master"]

    def save_state(self) -> dict[str, Any]:
        """Write cluster.json (see `describe`; 0600: key and password) and return its content."""
        state = self.describe()
        write_private(self.state_path, json.dumps(state, indent=2))
        return state

    def _start(self, detach: bool, timeout: float, saved_user: dict[str, str] | None,
               saved_nodes: list[dict[str, Any]] | None) -> None:
        redis_url = self.redis_url or os.environ.get("REDIS_URL", "")
        passwords = new_passwords(ha=self.ha)
        if self.ha:
            redis_url = self._start_ha(passwords, detach)
        elif not redis_url:
            folder = os.path.join(self.workdir, "redis")
            if not saved_user:
                # Nothing saved to log in with: start clean (this Redis is ours alone).
                shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder, mode=0o700, exist_ok=True)
            self.redis_admin_password = secrets.token_urlsafe(24)
            aclfile = write_aclfile(os.path.join(folder, "users.acl"), REDIS_PREFIX, passwords,
                                    self.redis_admin_password)
            self.redis = RedisProcess(folder, aclfile=aclfile)
            self.redis.start(detach=detach)
            redis_url = self.redis.url
            self.say("redis-server on {}".format(redis_url))
        self.redis_url = redis_url
        logins = self._redis_logins(redis_url, passwords)
        self.nodes = plan_nodes(self.workdir, self.prisms, self.stores, saved_nodes,
                                self.masters)
        if self.nginx:
            self._plan_fronts()
        self.write_configs(logins)
        for name, front in self.fronts.items():
            front.start(detach=detach)
            self.say("{:<8} nginx   http://{}:{} ready".format(name, front.host, front.port))
        # The masters first: the other roles register with them at start-up.
        self._launch([n for n in self.nodes if n.role == "master"], detach, timeout)
        self._launch([n for n in self.nodes if n.role != "master"], detach, timeout)
        self._wait_meshed(timeout)
        self.user = self._first_user(self.nodes[0].url, saved_user)

    def _start_ha(self, passwords: dict[str, str], detach: bool) -> str:
        """Start a clean Redis primary, replicas and Sentinels; the primary's URL.  (Kept
        data could sit on any server after a failover: --ha starts Redis empty, and the
        stores publish their inventory again.)"""
        folder = os.path.join(self.workdir, "redis-ha")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, mode=0o700)
        self.redis_admin_password = secrets.token_urlsafe(24)
        self.redis_ha = RedisHA(folder, passwords, self.redis_admin_password, REDIS_PREFIX)
        self.redis_ha.start(detach=detach)
        self.say("redis-server primary, {} replicas and Sentinels on {}".format(
            len(self.redis_ha.servers) - 1, ", ".join(self.redis_ha.sentinel_addresses)))
        return self.redis_ha.servers[0].url

    def _plan_fronts(self) -> None:
        """An nginx per store (`--nginx`): the store registers its URL (public_url)."""
        secret = delivery_secret(self.cluster_key)
        for node in self.nodes:
            if node.role == "store":
                self.fronts[node.name] = store_front(
                    os.path.join(self.workdir, "nginx", node.name), host=node.host,
                    port=_free_port_on(node.host, socket.SOCK_STREAM), root=node.root,
                    secret=secret, upstream="{}:{}".format(node.host, node.port))

    def _redis_logins(self, redis_url: str, passwords: dict[str, str]
                      ) -> dict[str, tuple[str, str]]:
        """(url, password) of each Redis user.  A private Redis has the users from its
        ACL file; on an external REDIS_URL they are created when its login may, else
        every role shares that login (with a warning)."""
        if self.redis is None and self.redis_ha is None:
            try:
                refused = create_users(parse_redis_url(redis_url), REDIS_PREFIX, passwords)
            except OSError as exc:
                raise RuntimeError("the Redis of REDIS_URL does not answer: {}".format(
                    exc)) from None
            if refused:
                self.say("warning: cannot create the Redis ACL users ({}); every role "
                         "uses the REDIS_URL login".format(refused))
                return {user: (redis_url, "") for user in passwords}
        self.redis_acl = True
        return {user: (login_url(redis_url, user), password)
                for user, password in passwords.items()}

    def _launch(self, nodes: list[NodeSpec], detach: bool, timeout: float) -> None:
        for node in nodes:
            process = NodeProcess(node.role, node.name, node.config, node.log)
            process.start(detach=detach)
            self.processes[node.name] = process
        for node in nodes:
            self.processes[node.name].wait_listening(timeout)
        for node in nodes:
            self.processes[node.name].wait_healthy(node.url, timeout)
            self.say("{:<8} {:<7} {} ready".format(node.name, node.role, node.url))

    def _wait_meshed(self, timeout: float) -> None:
        """Wait until every prism and store knows every other one as available.

        A node registers at start-up, but the others learn of it only at their
        next registry download; a cluster handed out before that would, for
        example, place an upload's copies on the few stores a prism knows yet.
        """
        members = [n for n in self.nodes if n.role != "master"]
        deadline = time.monotonic() + timeout
        waiting = list(members)
        while waiting and time.monotonic() < deadline:
            waiting = [n for n in waiting if not _sees_all(n, members, self.cluster_key)]
            if waiting:
                time.sleep(0.1)
        if waiting:
            raise RuntimeError("the ping net did not mesh within {} s: {}".format(
                timeout, ", ".join(n.name for n in waiting)))

    def _first_user(self, master_url: str,
                    saved_user: dict[str, str] | None) -> dict[str, str] | None:
        """Create the first user, or reuse the saved one when it exists already."""
        status, data = http_call("POST", master_url + "/users", {"username": FIRST_USER},
                                 key=self.cluster_key)
        if status == 201:
            created = decode_json(data)
            return {"username": created["username"], "password": created["password"]}
        if status in (404, 405):
            self.say("(the master has no user routes yet: no first user created)")
            return None
        if status != 409:
            raise RuntimeError("creating the first user failed: {} {!r}".format(
                status, data[:200]))
        if saved_user and http_call("POST", master_url + "/user/login", saved_user,
                                    key=self.cluster_key)[0] == 200:
            self.say("user {} exists from the previous run: reusing it".format(FIRST_USER))
            return saved_user
        self.say("user {} already exists in {} and {} holds no working password for it".format(
            FIRST_USER, self.redis_url, self.state_path))
        return None

    def describe(self) -> dict[str, Any]:
        """The cluster.json content: nodes, Redis, key and first user."""
        nodes = []
        for node in self.nodes:
            process = self.processes.get(node.name)
            nodes.append({"name": node.name, "role": node.role, "host": node.host,
                          "port": node.port, "url": node.url, "https_url": node.https_url,
                          "ping_port": node.ping_port,
                          "zone": node.zone, "config": node.config, "log": node.log,
                          "root": node.root, "pid": process.pid if process else None})
        redis: dict[str, Any] = {"url": self.redis_url,
                                 "managed": self.redis is not None or self.redis_ha is not None,
                                 "acl": self.redis_acl}
        if self.redis_ha is not None:
            redis.update(self.redis_ha.describe(), admin_password=self.redis_admin_password)
        if self.redis is not None and self.redis.process is not None:
            redis.update(pid=self.redis.process.pid, port=self.redis.port,
                         folder=self.redis.folder, admin_password=self.redis_admin_password)
        prisms = [n for n in nodes if n["role"] == "prism"]
        fronts = [{"name": name, "url": "http://{}:{}".format(front.host, front.port),
                   "prefix": front.prefix,
                   "pid": front.process.pid if front.process is not None else None}
                  for name, front in self.fronts.items()]
        return {"nginx": fronts, "prism_workers": self.prism_workers,
                "workdir": self.workdir, "cluster_key": self.cluster_key, "redis": redis,
                "nodes": nodes, "user": self.user,
                "prism_url": prisms[0]["url"] if prisms else None,
                "prism_https_url": prisms[0]["https_url"] if prisms else None,
                "ca_file": self.ca_file, "master_url": nodes[0]["url"] if nodes else None,
                "master_urls": self.master_urls}

    def down(self) -> None:
        """Stop what this object started (nodes first, Redis last)."""
        for process in reversed(list(self.processes.values())):
            process.stop()
        for front in self.fronts.values():
            front.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.redis_ha is not None:
            self.redis_ha.stop()


def _sees_all(node: NodeSpec, members: list[NodeSpec], key: str) -> bool:
    """True when `node`'s /pingnet/status lists every other member as available, at the
    HTTP port it has now (a second `dev up` may move a node whose port was taken, and a
    registry copy from before would send redirects to the old one)."""
    status, body = http_get_json(node.url + "/pingnet/status", timeout=1.0, key=key)
    if status != 200 or not isinstance(body, dict):
        return False
    seen = {str(p.get("name")): (bool(p.get("available")), p.get("port"))
            for p in body.get("peers", [])}
    return all(seen.get(m.name) == (True, m.port) for m in members if m.name != node.name)


def write_private(path: str, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only from the first byte on."""
    write_file(path, text.encode("utf-8"), 0o600)


def load_state(workdir: str) -> dict[str, Any] | None:
    """The cluster.json of `workdir`, or None."""
    try:
        with open(os.path.join(workdir, CLUSTER_FILE), encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int | None, *markers: str) -> bool:
    """True when `pid` runs and its command line mentions a marker (it is ours)."""
    if not pid:
        return False
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return False
    return any(marker in cmdline for marker in markers)


def _stop_pid(pid: int, *markers: str, timeout: float = 15.0) -> bool:
    """TERM (then KILL) `pid` if it is still ours; True if it was running."""
    if not _alive(pid, *markers):
        return False
    os.kill(pid, signal.SIGCONT)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, *markers):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def _redis_markers(redis: dict[str, Any]) -> tuple[str, ...]:
    """How a managed redis-server's command line names its port."""
    port = redis.get("port")
    return "--port {}".format(port), "127.0.0.1:{}".format(port)


def managed_redis(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The redis-server processes `stretchfs dev up` started (Sentinels first), from
    cluster.json `state`: each with pid and port."""
    redis = state.get("redis") or {}
    if not redis.get("managed"):
        return []
    if "servers" in redis:
        return list(redis.get("sentinel_processes") or []) + list(redis["servers"])
    return [redis]


def running_processes(state: dict[str, Any]) -> list[str]:
    """Names of the processes recorded in cluster.json `state` that still run."""
    names = [n["name"] for n in state.get("nodes", []) if _alive(n.get("pid"), n["config"])]
    names += ["nginx of " + n["name"] for n in state.get("nginx") or []
              if _alive(n.get("pid"), n["prefix"])]
    if any(_alive(r.get("pid"), *_redis_markers(r)) for r in managed_redis(state)):
        names.append("redis-server")
    return names


def stop_detached(workdir: str, say: Callable[[str], None] = print) -> int:
    """Stop a cluster started with --detach; returns how many processes were stopped."""
    state = load_state(workdir) or {}
    stopped = 0
    for node in reversed(state.get("nodes", [])):
        if _stop_pid(node.get("pid") or 0, node["config"]):
            say("stopped {} (pid {})".format(node["name"], node["pid"]))
            stopped += 1
    for front in state.get("nginx") or []:
        if _stop_pid(front.get("pid") or 0, front["prefix"]):
            say("stopped the nginx of {} (pid {})".format(front["name"], front["pid"]))
            stopped += 1
    for redis in managed_redis(state):
        if _stop_pid(redis.get("pid") or 0, *_redis_markers(redis)):
            say("stopped redis-server (pid {})".format(redis["pid"]))
            stopped += 1
    return stopped


def cluster_status(workdir: str) -> list[tuple[str, str, str, int, str]]:
    """(name, role, url, HTTP status, summary) of every node of the cluster."""
    state = load_state(workdir)
    if state is None:
        return []
    rows = []
    for node in state["nodes"]:
        status, body = http_get_json(node["url"] + "/health")
        if status == 0:
            summary = "unreachable"
        elif status == 200:
            summary = "ok"
        else:
            summary = (body or {}).get("error", "status {}".format(status))
        rows.append((node["name"], node["role"], node["url"], status, summary))
    return rows


def usage_example(state: dict[str, Any]) -> str:
    """A ready-to-paste shell session over HTTPS: log in, upload, purchase, download."""
    prism = state.get("prism_https_url") or state["prism_url"]
    user = state.get("user") or {"username": FIRST_USER, "password": "<password>"}
    return "\n".join([
        "PRISM={}".format(prism),
        "CA={}".format(state.get("ca_file") or ""),
        "TOKEN=$(curl -s --cacert $CA -X POST $PRISM/user/login \\",
        "  -H 'Content-Type: application/json' \\",
        "  -d '{{\"username\":\"{}\",\"password\":\"{}\"}}' \\".format(
            user["username"], user["password"]),
        "  | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"session\"][\"token\"])')",
        "echo 'hello stretchfs' > /tmp/hello.txt",
        "HASH=$(curl -s --cacert $CA -H \"X-STRETCHFS-Token: $TOKEN\" -F file=@/tmp/hello.txt \\",
        "  $PRISM/content/upload | python3 -c 'import json,sys; "
        "print(json.load(sys.stdin)[\"files\"][\"file\"][\"hash\"])')",
        "PURCHASE=$(curl -s --cacert $CA -H \"X-STRETCHFS-Token: $TOKEN\" \\",
        "  -H 'Content-Type: application/json' \\",
        "  -d \"{\\\"hash\\\":\\\"$HASH\\\",\\\"ext\\\":\\\"txt\\\",\\\"referrer\\\":[]}\" \\",
        "  $PRISM/content/purchase | python3 -c 'import json,sys; "
        "print(json.load(sys.stdin)[\"token\"])')",
        "curl -sL --cacert $CA $PRISM/$PURCHASE/hello.txt",
    ])
