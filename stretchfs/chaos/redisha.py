"""Scenarios `redis-failover` (the Redis primary is SIGKILLed under load) and
`redis-partition` (it is cut off by nftables), against `stretchfs dev up --ha`.

Sentinel promotes a replica; every role follows it without a restart.  The
scenario measures the failover time (kill -> first purchase acknowledged
again), checks that writes work again within `FAILOVER_LIMIT_SECONDS`, that
no acknowledged user, purchase or upload is lost (each checked at the end),
that the ping net marked no one down and that no node was restarted.  It then
heals: a killed server starts again, a cut-off one is reconnected, and the
Sentinels turn it into a replica of the new primary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Callable

from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.scenarios import (
    Options,
    Report,
    _finish,
    _master_call,
    _nft,
    _start_load,
    _watch_all,
    in_private_netns,
)
from stretchfs.chaos.watch import VerdictWatch, wait_until
from stretchfs.devcluster.cluster import CLUSTER_FILE, _alive, write_private
from stretchfs.devcluster.sentinel import (
    ha_settled,
    is_synced_replica,
    primary_port,
    restart_server,
)

FAILOVER_LIMIT_SECONDS = 10.0
# A Sentinel that stalled stays in TILT mode for 30 s: wait out one such period.
SETTLE_TIMEOUT_SECONDS = 45.0
REJOIN_TIMEOUT_SECONDS = 30.0
PARTITION_TABLE = "stretchfs_redis_partition"


class _Writer:
    """Creates users and purchases through the master in a loop, keeping what it was
    acknowledged (the thing that must survive) and when each call started."""

    def __init__(self, handle: ClusterHandle, sha1: str, ext: str) -> None:
        self._handle = handle
        self._sha1, self._ext = sha1, ext
        self.users: dict[str, str] = {}
        self.purchases: list[str] = []
        self.acked_purchases: list[float] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Begin writing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop writing and wait for the loop."""
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        count = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            count += 1
            started = time.monotonic()
            status, body = _master_call(self._handle, "POST", "/purchases",
                                        {"hash": self._sha1, "ext": self._ext, "life": 3600})
            if status in (200, 201) and body:
                self.purchases.append(str(body["token"]))
                self.acked_purchases.append(started)
            else:
                self.refused += 1
            name = "ha-{}-{}".format(os.getpid(), count)
            status, body = _master_call(self._handle, "POST", "/users", {"username": name})
            if status == 201 and body:
                self.users[name] = str(body["password"])
            elif status != 409:  # 409: a retried creation that had been applied
                self.refused += 1
            self._stop.wait(0.1)

    def first_purchase_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first acknowledged purchase started after it."""
        later = [at for at in self.acked_purchases if at >= moment]
        return min(later) - moment if later else None


def _primary_row(handle: ClusterHandle) -> dict[str, Any] | None:
    redis = handle.state.get("redis") or {}
    port = primary_port(list(redis.get("sentinels") or []))
    for row in redis.get("servers") or []:
        if row["port"] == port and _alive(row.get("pid"), "127.0.0.1:{}".format(port)):
            return dict(row)
    return None


def _ready_primary(handle: ClusterHandle) -> dict[str, Any] | None:
    """The primary's row once Sentinel can fail it over (`ha_settled`), else None."""
    row = _primary_row(handle)
    redis = handle.state["redis"]
    if row is None or not ha_settled(list(redis["sentinels"]), int(row["port"]),
                                     str(redis.get("admin_password") or "")):
        return None
    return row


def _node_pids(handle: ClusterHandle) -> dict[str, Any]:
    return {n["name"]: n.get("pid") for n in handle.nodes()}


def _lost_users(handle: ClusterHandle, users: dict[str, str]) -> list[str]:
    return [name for name, password in users.items()
            if _master_call(handle, "POST", "/user/login",
                            {"username": name, "password": password})[0] != 200]


def _lost_purchases(handle: ClusterHandle, tokens: list[str]) -> list[str]:
    return [token for token in tokens
            if _master_call(handle, "GET", "/purchases/" + token)[0] != 200]


def redis_failover(handle: ClusterHandle, options: Options) -> Report:
    """10. The Redis primary is SIGKILLed under load: a replica takes over within seconds."""
    def hurt(victim: dict[str, Any]) -> None:
        os.kill(int(victim["pid"]), signal.SIGKILL)

    return _primary_outage(handle, options, Report("redis-failover"), hurt, _restart)


def redis_partition(handle: ClusterHandle, options: Options) -> Report:
    """11. The Redis primary is cut off (nftables, in a private namespace) but keeps running
    and accepting writes from nobody; after healing it rejoins as a replica, nothing
    acknowledged lost."""
    report = Report("redis-partition")
    if not in_private_netns() or shutil.which("nft") is None:
        report.notes.append("skipped: needs nft and a private network namespace (run the "
                            "cluster and this command under `ip netns exec`)")
        return report

    def hurt(victim: dict[str, Any]) -> None:
        _nft("table ip {t} {{\n chain input {{\n  type filter hook input priority -10;\n"
             "  tcp dport {p} drop\n  tcp sport {p} drop\n }}\n}}\n".format(
                 t=PARTITION_TABLE, p=int(victim["port"])))

    def heal(handle: ClusterHandle, victim: dict[str, Any], report: Report) -> None:
        subprocess.run(["nft", "delete", "table", "ip", PARTITION_TABLE], timeout=10,
                       capture_output=True)
        password = str(handle.state["redis"].get("admin_password") or "")
        took = wait_until(lambda: is_synced_replica(int(victim["port"]), password),
                          REJOIN_TIMEOUT_SECONDS, step=0.2)
        if took is None:
            report.fail("the cut-off primary did not rejoin as a replica within {} s".format(
                REJOIN_TIMEOUT_SECONDS))
        else:
            report.notes.append("the old primary rejoined as a replica {:.1f} s after the "
                                "heal".format(took))

    return _primary_outage(handle, options, report, hurt, heal)


def _primary_outage(handle: ClusterHandle, options: Options, report: Report,
                    hurt: Callable[[dict[str, Any]], None],
                    heal: Callable[[ClusterHandle, dict[str, Any], Report], None]) -> Report:
    """Hurt the primary under load and writes; check the failover time and that nothing
    acknowledged was lost, no verdict was false and no node restarted; then heal."""
    took = wait_until(lambda: _ready_primary(handle) is not None, SETTLE_TIMEOUT_SECONDS,
                      step=0.5)
    victim = _primary_row(handle)
    if victim is None:
        report.fail("no Redis primary behind Sentinel (start with `stretchfs dev up --ha`)")
        return report
    if took is None:
        report.fail("the Sentinels were not ready to fail over within {:.0f} s (in TILT "
                    "mode, or not seeing both replicas)".format(SETTLE_TIMEOUT_SECONDS))
        return report
    report.notes.append("Sentinels ready to fail over after {:.1f} s".format(took))
    pids = _node_pids(handle)
    watch = VerdictWatch(handle.nodes(), handle.state["cluster_key"])
    load = _start_load(handle, options)
    stop = threading.Event()
    observers = [n["name"] for n in handle.nodes() if n["role"] != "master"]
    watcher = threading.Thread(target=_watch_all, args=(watch, observers, stop), daemon=True)
    watcher.start()
    writer = _Writer(handle, load.items[0].sha1, load.items[0].ext)
    writer.start()
    try:
        time.sleep(options.settle_seconds / 2)
        hurt(victim)
        hurt_at = time.monotonic()
        wait_until(lambda: writer.first_purchase_after(hurt_at) is not None,
                   FAILOVER_LIMIT_SECONDS * 3, step=0.2)
        took = writer.first_purchase_after(hurt_at)
        report.detection_seconds = took
        if took is None or took > FAILOVER_LIMIT_SECONDS:
            report.fail("writes did not work again within {} s of the fault (took {})".format(
                FAILOVER_LIMIT_SECONDS, took))
        else:
            report.notes.append("failover: first purchase acknowledged {:.2f} s after the "
                                "fault".format(took))
        time.sleep(options.settle_seconds)
    finally:
        writer.stop()
        heal(handle, victim, report)
        stop.set()
        watcher.join(10)
        _finish(load, report, handle)
    report.notes.append("writes acknowledged: {} users, {} purchases; refused (retried): "
                        "{}".format(len(writer.users), len(writer.purchases), writer.refused))
    lost_users = _lost_users(handle, writer.users)
    lost_purchases = _lost_purchases(handle, writer.purchases + [
        item.token for item in load.items if item.token])
    if lost_users or lost_purchases:
        report.data_lost += len(lost_users) + len(lost_purchases)
        report.fail("acknowledged writes lost: {} users, {} purchases".format(
            len(lost_users), len(lost_purchases)))
    if _node_pids(handle) != pids or not all(handle.is_running(n) for n in pids):
        report.fail("a node was restarted or stopped")
    report.failed.clear()
    report.failed.update({k: v for k, v in load.failures().items() if not k.endswith("-503")})
    if watch.ever_down:
        report.fail("peers falsely marked down: {}".format(sorted(watch.ever_down)))
    return report


def _restart(handle: ClusterHandle, victim: dict[str, Any], report: Report) -> None:
    """Start the killed server again (recorded in cluster.json for `dev down`)."""
    try:
        pid = restart_server(victim)
    except RuntimeError as exc:
        report.notes.append("the killed Redis did not start again: {}".format(exc))
        return
    for row in handle.state["redis"]["servers"]:
        if row["port"] == victim["port"]:
            row["pid"] = pid
    write_private(os.path.join(handle.workdir, CLUSTER_FILE), json.dumps(handle.state, indent=2))
