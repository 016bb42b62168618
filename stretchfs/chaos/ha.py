"""`master-kill`: one of two masters is SIGKILLed under load (docs/ha.md).

The usual load (uploads, purchases, downloads) runs next to clients that log
in and buy in a loop the way an application would, retrying a failed call
for up to `RETRY_SECONDS`.  The master killed is the one running the repair
planner.  Promises: no login or purchase fails beyond that retry, no call
of the load started `RETRY_SECONDS` after the kill fails, every job held
under a lease (the repair planner, the purchase pruning) runs on a surviving
master within `TAKEOVER_TIMEOUT_SECONDS` (read from each master's /metrics),
and nothing acknowledged is lost.  The killed master is started again at
the end.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from stretchfs.chaos.client import CallFailed, PrismUser
from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.load import PROPAGATION_SECONDS, Item, Load, Workers
from stretchfs.chaos.scenarios import Options, Report, check_nothing_lost
from stretchfs.chaos.watch import wait_until
from stretchfs.devcluster.process import http_call

RETRY_SECONDS = 2.0
RETRY_PAUSE_SECONDS = 0.1
PURCHASES_PER_LOGIN = 4
TAKEOVER_TIMEOUT_SECONDS = 30.0
# The gauge each lease-held job sets to 1 on the master that runs it.
LEASE_GAUGES = {"repair planner": "stretchfs_repair_leader",
                "purchase pruning": "stretchfs_master_prune_leader"}


def jobs_led(master_url: str) -> set[str] | None:
    """The lease-held jobs master `master_url` runs now (its /metrics); None when it does
    not answer."""
    status, body = http_call("GET", master_url + "/metrics", timeout=5.0)
    if status != 200:
        return None
    values = {}
    for line in body.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(" ")
        values[name] = value.strip()
    return {job for job, gauge in LEASE_GAUGES.items() if values.get(gauge) == "1.0"}


def retried(call: Callable[[], object], seconds: float) -> tuple[bool, int, str]:
    """Run `call`; after a failure retry it until `seconds` have passed since the first.
    (succeeded, failed attempts, the last failure's kind)."""
    failures = 0
    first: float | None = None
    kind = ""
    while True:
        try:
            call()
            return True, failures, kind
        except CallFailed as exc:
            failures += 1
            kind = exc.kind
            first = time.monotonic() if first is None else first
            if time.monotonic() - first >= seconds:
                return False, failures, kind
            time.sleep(RETRY_PAUSE_SECONDS)


@dataclass
class RetryingClients:
    """Threads that log in and buy in a loop, each call retried for `RETRY_SECONDS`."""

    prism_urls: list[str]
    username: str
    password: str
    item: Item
    threads: int = 2
    max_seconds: float = 300.0
    calls: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._workers = Workers()

    def start(self) -> None:
        """Start the threads."""
        self._workers.start(self._run, range(self.threads))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the threads and wait for them."""
        self._workers.stop(timeout)

    def _run(self, index: int) -> None:
        user = PrismUser(self.prism_urls[index % len(self.prism_urls)], self.username,
                         self.password)
        deadline = time.monotonic() + self.max_seconds
        try:
            for turn in itertools.count():
                if self._workers.stopping.is_set() or time.monotonic() >= deadline:
                    return
                if turn % PURCHASES_PER_LOGIN == 0:   # a login costs a bcrypt on the master
                    self._count("login", *retried(user.login, RETRY_SECONDS))
                self._count("purchase", *retried(
                    lambda: user.purchase(self.item.sha1, self.item.ext), RETRY_SECONDS))
        finally:
            user.close()

    def _count(self, operation: str, ok: bool, failures: int, kind: str) -> None:
        with self._lock:
            self.calls[operation] += 1
            if failures and ok:
                self.retried[operation] += 1
            if not ok:
                self.failed["{} ({})".format(operation, kind)] += 1


def master_kill(handle: ClusterHandle, options: Options) -> Report:
    """One of two masters (the repair planner's) is SIGKILLed under load: no login or
    purchase fails beyond a 2 s client retry, the lease-held jobs move to the other
    master, nothing acknowledged is lost; the master is restarted at the end."""
    report = Report("master-kill")
    masters = handle.nodes("master")
    if len(masters) < 2:
        report.fail("needs two masters (stretchfs dev up --masters 2)")
        return report
    victim = next((m for m in masters if "repair planner" in (jobs_led(m["url"]) or ())),
                  masters[0])
    others = [m for m in masters if m is not victim]
    user = handle.user
    prisms = [n["url"] for n in handle.nodes("prism")]
    load = Load(prisms, user["username"], user["password"], threads=options.threads)
    load.seed(options.seed_files)
    clients = RetryingClients(prisms, user["username"], user["password"], load.items[0])
    load.start()
    clients.start()
    try:
        time.sleep(max(PROPAGATION_SECONDS, options.settle_seconds))
        handle.signal(victim["name"], signal.SIGKILL)
        killed_at = time.monotonic()
        took = wait_until(lambda: _taken_over(others), TAKEOVER_TIMEOUT_SECONDS, step=0.2)
        report.detection_seconds = took
        if took is None:
            report.fail("the lease-held jobs did not move to {} within {:.0f} s".format(
                [m["name"] for m in others], TAKEOVER_TIMEOUT_SECONDS))
        else:
            report.notes.append("{} moved from {} in {:.1f} s".format(
                " and ".join(sorted(LEASE_GAUGES)), victim["name"], took))
        time.sleep(options.settle_seconds)
        clients.stop()
        report.notes.append("logins and purchases: {}, of which retried (< {:.0f} s): "
                            "{}".format(dict(clients.calls), RETRY_SECONDS,
                                        dict(clients.retried) or 0))
        if clients.failed:
            report.fail("failed beyond a {:.0f} s retry: {}".format(RETRY_SECONDS,
                                                                   dict(clients.failed)))
        if not clients.calls["purchase"]:
            report.fail("no purchase was made")
        late = load.failures(killed_at + RETRY_SECONDS)
        if late:
            report.fail("load failures {:.0f} s after the kill: {}".format(RETRY_SECONDS,
                                                                         dict(late)))
    finally:
        clients.stop()
        load.stop()
        if not handle.is_running(victim["name"]):
            handle.start(victim["name"])
    report.requests = load.count() + sum(clients.calls.values())
    report.failed.update(load.failures())
    report.failed.update(clients.failed)
    if load.failures():
        report.notes.append("load failures (not retried): {}; examples: {}".format(
            dict(load.failures()), load.examples()))
    check_nothing_lost(handle, load.uploaded, report)
    return report


def _taken_over(masters: list[dict[str, str]]) -> bool:
    """True when every lease-held job runs on one of `masters`."""
    led: set[str] = set()
    for master in masters:
        led |= jobs_led(master["url"]) or set()
    return led == set(LEASE_GAUGES)
