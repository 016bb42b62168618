"""OpenStack Swift all-in-one on loopback, from Debian's packages, for the benches.

`ensure_packages` installs Debian's `swift*` and `memcached` packages (only as
root, only when missing) or says why Swift cannot run; `xattr_problem` probes
the device folder's filesystem for the user xattrs Swift's object files need.
`SwiftAIO` writes everything under one folder (configs, rings, devices, logs):
memcached, an account, a container and two object servers and a proxy
(tempauth, tempurl), all on 127.0.0.1 ports, every one started here in its own
session and stopped by its own PID (and process group: the workers it forked).
Two storage policies share the servers: "one" (1 replica, object server 1)
and "two" (2 replicas, one on each object server); the account and container
rings have 1 replica.

Debian's servers read swift.conf from /etc/swift whatever their `swift_dir`
says, so each is started through a small wrapper that points Swift at this
folder's swift.conf first: nothing under /etc is written.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import http.client
import os
import secrets
import signal
import socket
import subprocess
import time
from typing import Callable

from stretchfs.devcluster.ports import free_port

PACKAGES = ("swift", "swift-proxy", "swift-object", "swift-account", "swift-container",
            "memcached")
SWIFT_PYTHON = "/usr/bin/python3"
APT_TIMEOUT_SECONDS = 600
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
PART_POWER = 8
USER, KEY = "test:tester", "testing"
POLICIES = {1: "one", 2: "two"}  # replicas -> storage policy name

WRAPPER = """
import runpy, sys
from swift.common import utils
from swift.common.storage_policy import reload_storage_policies
utils.set_swift_dir(sys.argv[1])
reload_storage_policies()
script = sys.argv[2]
sys.argv = [script, sys.argv[3]]
runpy.run_path(script, run_name="__main__")
"""

# Swift's memcache client gives up after 0.3 s (connect) or 1-2 s (pool, io), and 10 such
# errors within 60 s shut memcached out for 60 s, which loses tempauth's tokens (401s):
# on a shared 2-core machine under load that happens, so the bench waits longer.
MEMCACHE_TIMEOUTS = ("connect_timeout = 2.0", "pool_timeout = 10.0", "io_timeout = 10.0")
PROXY_PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats "
                  "bulk tempurl ratelimit tempauth copy container-quotas account-quotas slo "
                  "dlo versioned_writes symlink proxy-logging proxy-server")


def missing_packages() -> list[str]:
    """The packages of PACKAGES that dpkg does not list as installed."""
    missing = []
    for package in PACKAGES:
        try:
            status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                                    capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            status = ""
        if not status.endswith("installed"):
            missing.append(package)
    return missing


def _apt_install(packages: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                          capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_SECONDS)


def ensure_packages(say: Callable[[str], None]) -> str | None:
    """None when Swift's packages are installed (installing the missing ones when we are
    root), else the reason Swift cannot be set up."""
    missing = missing_packages()
    if not missing:
        return None
    if os.geteuid() != 0:
        return "packages {} are not installed and this is not root (apt-get install -y " \
               "{})".format(", ".join(missing), " ".join(PACKAGES))
    say("installing {} with apt-get".format(" ".join(missing)))
    try:
        done = _apt_install(missing)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True,
                           timeout=APT_TIMEOUT_SECONDS)
            done = _apt_install(missing)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "apt-get install {} failed: {}".format(" ".join(missing), exc)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return "apt-get install {} failed (exit {}): {}".format(" ".join(missing),
                                                               done.returncode, tail)
    still = missing_packages()
    return "still not installed after apt-get: {}".format(", ".join(still)) if still else None


def swift_version() -> str:
    """The installed python3-swift package version (or "?")."""
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-swift"],
                              capture_output=True, text=True, timeout=30).stdout or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def xattr_problem(folder: str) -> str | None:
    """None when files in `folder` take user xattrs (Swift keeps its metadata in them),
    else why not (with the filesystem type)."""
    probe = os.path.join(folder, ".xattr-probe")
    try:
        with open(probe, "wb"):
            pass
        os.setxattr(probe, "user.swift.probe", b"1")
        if os.getxattr(probe, "user.swift.probe") != b"1":
            raise OSError("the xattr read back differs")
        return None
    except OSError as exc:
        try:
            kind = subprocess.run(["stat", "-f", "-c", "%T", folder], capture_output=True,
                                  text=True, timeout=10).stdout.strip() or "?"
        except (OSError, subprocess.TimeoutExpired):
            kind = "?"
        return "a probe of user xattrs in {} ({} filesystem) failed, and Swift's object " \
               "server keeps its metadata in them: {} (set TMPDIR to a folder on ext4 or " \
               "xfs)".format(folder, kind, exc)
    finally:
        if os.path.exists(probe):
            os.unlink(probe)


def _wait_port(port: int, process: subprocess.Popen[bytes], deadline: float, name: str) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("{} exited with {} at start-up".format(name, process.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("{} did not listen on port {} within {} s".format(
        name, port, START_TIMEOUT_SECONDS))


class SwiftAIO:
    """A Swift all-in-one under `folder`: start(), then put/tempurl, then stop()."""

    def __init__(self, folder: str, workers: str = "auto") -> None:
        self.folder = folder
        self.workers = workers
        self.etc = os.path.join(folder, "etc")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {name: free_port() for name in
                      ("memcached", "proxy", "account", "container", "object1", "object2")}
        self.token = ""
        self.account_path = ""
        self.tempurl_key = secrets.token_hex(16)

    @property
    def proxy_url(self) -> str:
        """Base URL of the proxy."""
        return "http://127.0.0.1:{}".format(self.ports["proxy"])

    def roots(self) -> list[int]:
        """PIDs of the processes started here (their workers are their children)."""
        return [process.pid for process in self.processes.values()]

    def start(self) -> None:
        """Write configs and rings, start every server, log in, set the tempurl key and
        create one container per storage policy; stops what started on failure."""
        try:
            self._write_all()
            self._spawn("memcached", self._memcached_command())
            for name, script in (("account", "account"), ("container", "container"),
                                 ("object1", "object"), ("object2", "object"),
                                 ("proxy", "proxy")):
                self._spawn(name, [SWIFT_PYTHON, "-c", WRAPPER, self.etc,
                                   "/usr/bin/swift-{}-server".format(script),
                                   os.path.join(self.etc, name + ".conf")])
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            for name, process in self.processes.items():
                _wait_port(self.ports[name], process, deadline, name)
            self._login(deadline)
            self._request("POST", self.account_path, {"X-Account-Meta-Temp-URL-Key":
                                                      self.tempurl_key}, expect=(204,))
            for replicas, policy in POLICIES.items():
                self._request("PUT", self.container_path(replicas),
                              {"X-Storage-Policy": policy}, expect=(201, 202))
        except BaseException:
            self.stop()
            raise

    def container_path(self, replicas: int) -> str:
        """Path of the container whose objects have `replicas` copies."""
        return "{}/bench-{}".format(self.account_path, POLICIES[replicas])

    def put(self, conn: http.client.HTTPConnection, path: str, data: bytes | memoryview) -> None:
        """One object PUT of `data` on `conn` (streamed in 1 MiB pieces); raises unless 201."""
        conn.putrequest("PUT", path)
        conn.putheader("X-Auth-Token", self.token)
        conn.putheader("Content-Length", str(len(data)))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        view = memoryview(data)
        for start in range(0, len(view), 1 << 20):
            conn.send(view[start:start + (1 << 20)])
        reply = conn.getresponse()
        body = reply.read()
        if reply.status != 201:
            raise RuntimeError("Swift PUT {} answered {} {!r}".format(path, reply.status,
                                                                      body[:200]))

    def tempurl(self, path: str, seconds: float) -> str:
        """A GET temp URL for the object at `path`, valid for `seconds`."""
        expires = int(time.time() + seconds)
        signature = hmac.new(self.tempurl_key.encode(), "GET\n{}\n{}".format(
            expires, path).encode(), hashlib.sha256).hexdigest()
        return "{}{}?temp_url_sig={}&temp_url_expires={}".format(self.proxy_url, path,
                                                                 signature, expires)

    def stop(self) -> None:
        """TERM each started server (the proxy first), KILL it and its process group after
        STOP_TIMEOUT_SECONDS; a Swift server's TERM stops the workers of its group."""
        for name in reversed(list(self.processes)):
            process = self.processes.pop(name)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT_SECONDS)
            try:  # workers left behind: the group is the one this process led
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    # -- set-up ---------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(os.path.join(self.folder, "log", name + ".log"), "wb")
        try:
            self.processes[name] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.folder)
        finally:
            log.close()

    def _memcached_command(self) -> list[str]:
        command = ["memcached", "-l", "127.0.0.1", "-p", str(self.ports["memcached"]),
                   "-U", "0", "-m", "64", "-t", "1"]
        return command + (["-u", getpass.getuser()] if os.geteuid() == 0 else [])

    def _write_all(self) -> None:
        for sub in ("etc", "log", "cache", "node1/d1", "node2/d2"):
            os.makedirs(os.path.join(self.folder, sub), exist_ok=True)
        self._write("swift.conf", "\n".join([
            "[swift-hash]", "swift_hash_path_suffix = {}".format(secrets.token_hex(8)),
            "swift_hash_path_prefix = {}".format(secrets.token_hex(8)),
            "[storage-policy:0]", "name = {}".format(POLICIES[1]), "default = yes",
            "[storage-policy:1]", "name = {}".format(POLICIES[2]), ""]))
        servers = {"account": ("account", "node1"), "container": ("container", "node1"),
                   "object1": ("object", "node1"), "object2": ("object", "node2")}
        for name, (kind, node) in servers.items():
            self._write(name + ".conf", "\n".join([
                *self._default(name, os.path.join(self.folder, node)),
                "[pipeline:main]", "pipeline = {}-server".format(kind),
                "[app:{}-server]".format(kind), "use = egg:swift#{}".format(kind), ""]))
        filters = {"catch_errors": "catch_errors", "gatekeeper": "gatekeeper",
                   "healthcheck": "healthcheck", "proxy-logging": "proxy_logging",
                   "cache": "memcache", "listing_formats": "listing_formats", "bulk": "bulk",
                   "tempurl": "tempurl", "ratelimit": "ratelimit", "tempauth": "tempauth",
                   "copy": "copy", "container-quotas": "container_quotas",
                   "account-quotas": "account_quotas", "slo": "slo", "dlo": "dlo",
                   "versioned_writes": "versioned_writes", "symlink": "symlink"}
        proxy = [*self._default("proxy", ""), "[pipeline:main]",
                 "pipeline = " + PROXY_PIPELINE, "[app:proxy-server]", "use = egg:swift#proxy",
                 "account_autocreate = true"]
        for name, egg in filters.items():
            proxy += ["[filter:{}]".format(name), "use = egg:swift#{}".format(egg)]
            if name == "cache":
                proxy += ["memcache_servers = 127.0.0.1:{}".format(self.ports["memcached"]),
                          *MEMCACHE_TIMEOUTS]
            if name == "tempauth":
                proxy.append("user_test_tester = {} .admin".format(KEY))
        self._write("proxy.conf", "\n".join(proxy + [""]))
        one = [(self.ports["account"], "d1")]
        self._ring("account", 1, one)
        self._ring("container", 1, [(self.ports["container"], "d1")])
        self._ring("object", 1, [(self.ports["object1"], "d1")])
        self._ring("object-1", 2, [(self.ports["object1"], "d1"), (self.ports["object2"], "d2")])

    def _default(self, name: str, devices: str) -> list[str]:
        lines = ["[DEFAULT]", "bind_ip = 127.0.0.1", "bind_port = {}".format(self.ports[name]),
                 "swift_dir = {}".format(self.etc), "user = {}".format(getpass.getuser()),
                 "workers = {}".format(self.workers), "mount_check = false",
                 "log_name = swift-{}".format(name),
                 "recon_cache_path = {}".format(os.path.join(self.folder, "cache"))]
        return lines + (["devices = {}".format(devices)] if devices else [])

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.etc, name), "w") as handle:
            handle.write(text)

    def _ring(self, name: str, replicas: int, devices: list[tuple[int, str]]) -> None:
        builder = os.path.join(self.etc, name + ".builder")

        def run(*args: str) -> None:
            done = subprocess.run(["swift-ring-builder", builder, *args], capture_output=True,
                                  text=True, timeout=60)
            if done.returncode not in (0, 1):  # 1: a warning (e.g. balance)
                raise RuntimeError("swift-ring-builder {} {} failed: {}".format(
                    name, " ".join(args), done.stdout + done.stderr))

        run("create", str(PART_POWER), str(replicas), "0")
        for port, device in devices:
            run("add", "r1z1-127.0.0.1:{}/{}".format(port, device), "100")
        run("rebalance")

    def _request(self, method: str, path: str, headers: dict[str, str],
                 expect: tuple[int, ...]) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["proxy"], timeout=30)
        try:
            conn.request(method, path, headers=dict(headers, **({"X-Auth-Token": self.token}
                                                                if self.token else {})))
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
        if reply.status not in expect:
            raise RuntimeError("Swift {} {} answered {} {!r}".format(method, path, reply.status,
                                                                    body[:200]))
        return reply

    def _login(self, deadline: float) -> None:
        """tempauth's token and account path (retried while the proxy warms up)."""
        problem: Exception | None = None
        while time.monotonic() < deadline:
            try:
                reply = self._request("GET", "/auth/v1.0", {"X-Auth-User": USER,
                                                            "X-Auth-Key": KEY}, expect=(200,))
                self.token = reply.getheader("X-Auth-Token") or ""
                url = reply.getheader("X-Storage-Url") or ""
                self.account_path = "/" + url.split("/", 3)[3]
                return
            except (OSError, RuntimeError, IndexError) as exc:
                problem = exc
                time.sleep(0.2)
        raise RuntimeError("Swift login failed: {}".format(problem))
