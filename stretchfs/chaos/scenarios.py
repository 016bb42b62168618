"""The failure scenarios of `stretchfs chaos`, each under a bounded client load.

Every scenario hurts one part of a running local cluster, measures what the
clients saw, heals the cluster (every node it stopped runs and is healthy
again) and checks that nothing acknowledged was lost: every uploaded hash
must be in the master's inventory.  A broken promise marks the report
FAILED with a note saying which.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable

from stretchfs.chaos.client import CallFailed, PrismUser, probe
from stretchfs.chaos.cluster import ClusterHandle
from stretchfs.chaos.load import PROPAGATION_SECONDS, Item, Load
from stretchfs.chaos.watch import VerdictWatch, wait_until
from stretchfs.client import Content
from stretchfs.config import load_config
from stretchfs.devcluster.cluster import write_private
from stretchfs.devcluster.process import decode_json, http_call, http_get_json, read_events
from stretchfs.store.layout import ContentStore

DETECTION_TIMEOUT_SECONDS = 20.0
# A peer down again within the ping net's flap window is held out longer
# (flap dampening), so healing waits past the longest first hold.
HEAL_TIMEOUT_SECONDS = 75.0
# A removed peer leaves the nodes' registry copies at their next download (60 s).
REGISTRY_TIMEOUT_SECONDS = 75.0


@dataclass
class Options:
    """Knobs of a chaos run (the e2e tests shorten the outages)."""

    seed_files: int = 20
    threads: int = 4
    settle_seconds: float = 5.0
    master_down_seconds: float = 60.0
    redis_down_seconds: float = 30.0
    upload_mib: int = 64
    repair_seconds: float = 120.0


@dataclass
class Report:
    """What one scenario measured."""

    scenario: str
    requests: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    detection_seconds: float | None = None
    data_lost: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ok: bool = True

    def fail(self, why: str) -> None:
        """Record a broken promise."""
        self.ok = False
        self.notes.append(why)
        self.problems.append(why)

    def explain(self) -> str:
        """The broken promises, then the whole row: the message of a failed test."""
        return explain_row(self.as_row())

    def as_row(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {"scenario": self.scenario, "requests": self.requests,
                "failed": sum(self.failed.values()), "failures": dict(self.failed),
                "detection_seconds": self.detection_seconds, "data_lost": self.data_lost,
                "ok": self.ok, "problems": self.problems, "notes": self.notes}


def explain_row(row: dict[str, Any]) -> str:
    """A report row's broken promises, then the whole row: the message of a failed test."""
    return "broken: {}\nreport: {}".format(row.get("problems"), row)


# -- helpers ------------------------------------------------------------------

def _master_call(handle: ClusterHandle, method: str, path: str,
                 body: Any = None) -> tuple[int, Any]:
    status, data = http_call(method, handle.state["master_url"] + path, body,
                             key=handle.state["cluster_key"], timeout=15)
    return status, decode_json(data) if 200 <= status < 300 else None


def check_nothing_lost(handle: ClusterHandle, items: list[Item], report: Report,
                       timeout: float = 30.0) -> None:
    """Every acknowledged upload is in the master's inventory (waits for replays)."""
    missing = {item.sha1 for item in items}
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        missing = {sha1 for sha1 in missing
                   if not (_master_call(handle, "GET", "/inventory/" + sha1)[1] or {}).get(
                       "stores")}
        if missing:
            time.sleep(0.5)
    report.data_lost = len(missing)
    if missing:
        report.fail("{} acknowledged uploads missing from the master".format(len(missing)))


def _observers(handle: ClusterHandle, but: str = "") -> list[str]:
    return [n["name"] for n in handle.nodes() if n["role"] != "master" and n["name"] != but]


def _start_load(handle: ClusterHandle, options: Options,
                prisms: list[str] | None = None) -> Load:
    user = handle.user
    urls = [n["url"] for n in handle.nodes("prism") if prisms is None or n["name"] in prisms]
    load = Load(urls, user["username"], user["password"], threads=options.threads)
    load.seed(options.seed_files)
    load.start()
    time.sleep(PROPAGATION_SECONDS)  # the seeded purchases are now downloadable
    return load


def _finish(load: Load, report: Report, handle: ClusterHandle) -> None:
    load.stop()
    report.requests = load.count()
    failures = load.failures()
    report.failed.update(failures)
    if failures:
        report.notes.append("all client failures: {}".format(dict(failures)))
        report.notes.append("examples: {}".format(load.examples()))
    check_nothing_lost(handle, load.uploaded, report)


def _heal(handle: ClusterHandle, name: str, watch: VerdictWatch, report: Report) -> None:
    if not handle.is_running(name):
        handle.start(name)
    took = wait_until(lambda: watch.all_agree(_observers(handle), name, True),
                      HEAL_TIMEOUT_SECONDS, step=0.2)
    if took is None:
        report.fail("{} not available again on every node".format(name))
    else:
        report.notes.append("{} available again on every node after {:.1f} s".format(
            name, took))


def _try(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except CallFailed:
        return None


# -- 1, 2: a store dies or hangs ---------------------------------------------

def _store_fault(handle: ClusterHandle, options: Options, victim: str, fault: int,
                 scenario: str, before_fault: Callable[[], None] | None = None) -> Report:
    report = Report(scenario)
    survivors = _observers(handle, but=victim)
    watch = VerdictWatch(handle.nodes(), handle.state["cluster_key"])
    load = _start_load(handle, options)
    try:
        if before_fault is not None:
            before_fault()
        handle.signal(victim, fault)
        fault_at = time.monotonic()
        took = wait_until(lambda: watch.all_agree(survivors, victim, False),
                          DETECTION_TIMEOUT_SECONDS)
        report.detection_seconds = took
        if took is None:
            report.fail("{} not marked down by every survivor".format(victim))
        detected_at = time.monotonic()
        time.sleep(options.settle_seconds)
        during = load.failures(fault_at, detected_at)
        after = load.failures(detected_at)
        report.notes.append("failures during detection: {}".format(dict(during) or 0))
        if after:
            report.fail("failures after detection: {}".format(dict(after)))
    finally:
        if fault == signal.SIGSTOP and handle.is_running(victim):
            handle.signal(victim, signal.SIGCONT)
        _heal(handle, victim, watch, report)
        _finish(load, report, handle)
    false = watch.false_downs({victim})
    if false:
        report.fail("peers falsely marked down: {}".format(sorted(false)))
    return report


def store_kill(handle: ClusterHandle, options: Options) -> Report:
    """1. A store is SIGKILLed under load, restarted, and re-syncs."""
    return _store_fault(handle, options, handle.nodes("store")[-1]["name"], signal.SIGKILL,
                        "store-kill")


def store_hang(handle: ClusterHandle, options: Options) -> Report:
    """2. A store hangs (SIGSTOP) under load and while uploads stream to it, then
    continues (SIGCONT); every upload in flight answers within the prisms' timeout."""
    stores = handle.nodes("store")
    victim = stores[-2 if len(stores) > 1 else -1]["name"]
    prism = handle.nodes("prism")[0]
    bound = load_config("prism", prism["config"]).cluster.request_timeout + \
        UPLOAD_ANSWER_MARGIN_SECONDS
    uploads = _FreezeUploads(prism["url"], handle.user, handle.node(victim), options.threads)
    # The freeze outlasts `bound`: an upload stuck until SIGCONT shows as a late answer.
    frozen = replace(options, settle_seconds=max(options.settle_seconds, bound))
    report = _store_fault(handle, frozen, victim, signal.SIGSTOP, "store-hang",
                          before_fault=uploads.start)
    uploads.check(handle, report, bound)
    return report


# Uploads in flight when a store freezes answer within the prisms' request timeout
# plus this (a second copy elsewhere, under a loaded machine).
UPLOAD_ANSWER_MARGIN_SECONDS = 10.0
FREEZE_UPLOAD_BYTES = 16 * 1024 * 1024


class _FreezeUploads:
    """Uploads streaming to a store at the moment it freezes, and when each answered."""

    def __init__(self, prism_url: str, user: dict[str, str], victim: dict[str, Any],
                 threads: int) -> None:
        self._prism_url = prism_url
        self._user = user
        self._victim = victim
        self._threads = threads
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.frozen_at: float | None = None
        self.seen_receiving = False
        # (started, answered, record or None, failure kind)
        self.outcomes: list[tuple[float, float, Content | None, str]] = []

    def start(self) -> None:
        """Upload from a few threads until the victim is receiving one, then return."""
        for _ in range(self._threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)
        self.seen_receiving = wait_until(lambda: _receiving(self._victim), 60.0,
                                         step=0.01) is not None
        self.frozen_at = time.monotonic()

    def _run(self) -> None:
        user = PrismUser(self._prism_url, self._user["username"], self._user["password"],
                         timeout=600)
        _try(user.login)
        deadline = time.monotonic() + 120
        while self.frozen_at is None and time.monotonic() < deadline:
            data = os.urandom(FREEZE_UPLOAD_BYTES)
            started = time.monotonic()
            try:
                record, kind = user.upload(data, "frozen.bin"), "ok"
            except CallFailed as exc:
                record, kind = None, exc.kind
            with self._lock:
                self.outcomes.append((started, time.monotonic(), record, kind))

    def check(self, handle: ClusterHandle, report: Report, bound: float) -> None:
        """Every upload in flight at the freeze answered within `bound` seconds of it,
        and every one acknowledged is in the master's inventory."""
        for worker in self._workers:
            worker.join(600)
        if not self.seen_receiving or self.frozen_at is None:
            report.fail("no upload was seen streaming to the frozen store")
            return
        frozen_at = self.frozen_at
        inflight = [o for o in self.outcomes if o[0] < frozen_at < o[1]]
        if not inflight:
            report.fail("no upload was in flight when the store froze")
        late = [round(o[1] - frozen_at, 1) for o in inflight if o[1] - frozen_at > bound]
        if late:
            report.fail("uploads answered {} s after the freeze (bound {} s)".format(
                late, bound))
        report.notes.append("uploads in flight at the freeze answered after {} s: {}".format(
            [round(o[1] - frozen_at, 1) for o in inflight], [o[3] for o in inflight]))
        acknowledged = Report("acknowledged uploads")
        check_nothing_lost(handle, [Item(o[2].hash, o[2].ext, "", FREEZE_UPLOAD_BYTES)
                                    for o in self.outcomes if o[2] is not None], acknowledged)
        report.data_lost += acknowledged.data_lost
        for note in acknowledged.notes:
            report.fail(note)


# -- 3: a prism loses its state ------------------------------------------------

def prism_restart(handle: ClusterHandle, options: Options) -> Report:
    """3. A prism restarts empty: 503 until reloaded, then no false "not found"."""
    report = Report("prism-restart")
    prisms = handle.nodes("prism")
    victim = prisms[0]
    others = [p["name"] for p in prisms[1:]] or None
    load = _start_load(handle, options, prisms=others)
    seeded = list(load.items)
    answers: Counter[str] = Counter()
    try:
        handle.stop(victim["name"])
        handle.start(victim["name"], wait_healthy=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and handle.health(victim["name"])[0] != 200:
            item = seeded[len(answers) % len(seeded)]
            reply = _try(partial(probe, "{}/{}/x.{}".format(
                victim["url"], item.token, item.ext), timeout=5))
            answers[str(reply.status) if reply else "connection"] += 1
            time.sleep(0.02)
        report.notes.append("answers while loading: {}".format(dict(answers) or "none"))
        if answers.get("404"):
            report.fail("404 while the prism was loading its state")
        user = PrismUser(victim["url"], handle.user["username"], handle.user["password"])
        user.login()
        for item in seeded:
            try:
                user.download(item.token, "file." + item.ext, item.sha1)
            except CallFailed as exc:
                report.failed[exc.kind] += 1
        if report.failed:
            report.fail("content made before the restart not served: {}".format(
                dict(report.failed)))
    finally:
        if not handle.is_running(victim["name"]):
            handle.start(victim["name"])
        _finish(load, report, handle)
        report.requests += len(seeded) + sum(answers.values())
    return report


# -- 4: the master is down -----------------------------------------------------

def master_down(handle: ClusterHandle, options: Options) -> Report:
    """4. The master is down: delivery and uploads go on, purchases answer 503."""
    report = Report("master-down")
    load = _start_load(handle, options)
    try:
        handle.stop("master")
        down_at = time.monotonic()
        statics = _static_checks(handle, load.items, options.master_down_seconds)
        up_at = time.monotonic()
        handle.start("master")
        report.notes.append("static redirects while down: {}".format(dict(statics)))
        bad_static = {k: v for k, v in statics.items() if k != "ok"}
        if bad_static:
            report.fail("static redirects failed while the master was down")
        during = load.failures(down_at, up_at)
        expected = {k: v for k, v in during.items() if k == "purchase-503"}
        unexpected = {k: v for k, v in during.items() if k != "purchase-503"}
        uploads_ok = sum(1 for item in list(load.uploaded) if down_at <= item.made_at < up_at)
        report.notes.append("while down: {} uploads acknowledged, purchases refused {}".format(
            uploads_ok, expected or 0))
        if not uploads_ok:
            report.fail("no upload was acknowledged while the master was down")
        if unexpected:
            report.fail("unexpected failures while the master was down: {}".format(unexpected))
        time.sleep(options.settle_seconds)
        user = PrismUser(handle.nodes("prism")[0]["url"], handle.user["username"],
                         handle.user["password"])
        user.login()
        if not load.items:
            report.fail("nothing to purchase")
        else:
            if not _try(partial(user.purchase, load.items[0].sha1, load.items[0].ext)):
                report.fail("purchases do not work again after the master returned")
        after = load.failures(time.monotonic() - options.settle_seconds / 2)
        if after:
            report.fail("failures after the master returned: {}".format(dict(after)))
    finally:
        if not handle.is_running("master"):
            handle.start("master")
        _finish(load, report, handle)
    report.failed = Counter({k: v for k, v in report.failed.items() if k != "purchase-503"})
    return report


def _static_checks(handle: ClusterHandle, items: list[Item], seconds: float) -> Counter[str]:
    """Static redirects (and the store behind them) checked for `seconds`."""
    answers: Counter[str] = Counter()
    prisms = handle.nodes("prism")
    deadline = time.monotonic() + seconds
    index = 0
    while time.monotonic() < deadline:
        item = items[index % len(items)]
        prism = prisms[index % len(prisms)]
        index += 1
        reply = _try(partial(probe, "{}/static/{}/f.{}".format(
            prism["url"], item.sha1, item.ext), timeout=5))
        if reply is None or reply.status != 302:
            answers["static-{}".format(reply.status if reply else "connection")] += 1
        else:
            body = _try(partial(probe, reply.headers["location"], timeout=5))
            good = body is not None and hashlib.sha1(body.body).hexdigest() == item.sha1
            answers["ok" if good else "store-failed"] += 1
        time.sleep(0.05)
    return answers


# -- 5: the cluster Redis is down ----------------------------------------------

def redis_down(handle: ClusterHandle, options: Options) -> Report:
    """5. The cluster Redis hangs: no false verdicts, master 503 on writes, recovery."""
    report = Report("redis-down")
    watch = VerdictWatch(handle.nodes(), handle.state["cluster_key"])
    load = _start_load(handle, options)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_all, args=(watch, _observers(handle), stop),
                               daemon=True)
    watcher.start()
    refused: Counter[str] = Counter()
    try:
        handle.redis_signal(signal.SIGSTOP)
        deadline = time.monotonic() + options.redis_down_seconds
        while time.monotonic() < deadline:
            status, _ = _master_call(handle, "POST", "/purchases",
                                     {"hash": load.items[0].sha1, "ext": load.items[0].ext,
                                      "life": 60})
            refused[str(status)] += 1
            time.sleep(1.0)
        report.notes.append("master answers to writes while Redis was down: {}".format(
            dict(refused)))
        if set(refused) - {"503"}:
            report.fail("the master did not answer 503 to every write while Redis was down")
    finally:
        handle.redis_signal(signal.SIGCONT)
    took = wait_until(lambda: _master_call(handle, "POST", "/purchases", {
        "hash": load.items[0].sha1, "ext": load.items[0].ext, "life": 60})[0] in (200, 201),
        30, step=0.5)
    if took is None:
        report.fail("the master did not recover without a restart")
    else:
        report.notes.append("master writes work again {:.1f} s after Redis returned".format(
            took))
    time.sleep(options.settle_seconds)
    stop.set()
    watcher.join(10)
    _finish(load, report, handle)
    report.failed = Counter({k: v for k, v in report.failed.items() if not k.endswith("-503")})
    if watch.ever_down:
        report.fail("peers falsely marked down: {}".format(sorted(watch.ever_down)))
    return report


def _watch_all(watch: VerdictWatch, observers: list[str], stop: threading.Event) -> None:
    deadline = time.monotonic() + 600
    while not stop.is_set() and time.monotonic() < deadline:
        for observer in observers:
            watch.view(observer)
        stop.wait(0.2)


# -- 7: a store dies while receiving an upload -------------------------------

def store_kill_upload(handle: ClusterHandle, options: Options) -> Report:
    """7. A store is killed mid-upload: the answer tells the copies made, no partial file."""
    report = Report("store-kill-upload")
    watch = VerdictWatch(handle.nodes(), handle.state["cluster_key"])
    prism = handle.nodes("prism")[0]
    user = PrismUser(prism["url"], handle.user["username"], handle.user["password"],
                     timeout=120)
    user.login()
    data = os.urandom(options.upload_mib * 1024 * 1024)
    sha1 = hashlib.sha1(data).hexdigest()
    result: dict[str, Any] = {}
    uploader = threading.Thread(target=lambda: result.update(
        record=_try(lambda: user.upload(data, "big.bin"))), daemon=True)
    uploader.start()
    victim = _wait_for_receiving_store(handle, 30)
    if victim is None:
        report.fail("no store was seen receiving the upload")
    else:
        handle.signal(victim, signal.SIGKILL)
        report.notes.append("killed {} while it was receiving".format(victim))
    uploader.join(180)
    record = result.get("record")
    report.requests = 1
    if record is None:
        report.failed["upload"] += 1
        report.notes.append("the upload failed (acceptable only if no copy could be made)")
    else:
        report.notes.append("upload answered copies={}".format(record.copies))
    if victim is not None:
        _heal(handle, victim, watch, report)
    holders = _stores_holding(handle, sha1)
    status, row = _master_call(handle, "GET", "/inventory/" + sha1)
    listed = set((row or {}).get("stores") or [])
    if record is not None:
        if record.copies != len(holders):
            report.fail("upload answered {} copies, {} stores hold it".format(
                record.copies, len(holders)))
        if not listed:
            report.data_lost = 1
            report.fail("acknowledged upload missing from the master")
    if listed - set(holders):
        report.fail("the master lists stores without a complete copy: {}".format(
            sorted(listed - set(holders))))
    return report


def _wait_for_receiving_store(handle: ClusterHandle, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in handle.nodes("store"):
            if _receiving(node):
                return str(node["name"])
        time.sleep(0.01)
    return None


def _receiving(node: dict[str, Any]) -> bool:
    """The store is writing an upload of more than 1 MiB."""
    try:
        return any(entry.stat().st_size > 1024 * 1024
                   for entry in os.scandir(os.path.join(node["root"], "tmp")))
    except OSError:
        return False


def _stores_holding(handle: ClusterHandle, sha1: str) -> list[str]:
    """Stores with a complete, verified copy of `sha1` on disk."""
    holders = []
    for node in handle.nodes("store"):
        folder = os.path.join(node["root"], "content", sha1[:2], sha1[2:4])
        try:
            names = [e.path for e in os.scandir(folder) if e.name.startswith(sha1 + ".")]
        except OSError:
            continue
        for path in names:
            digest = hashlib.sha1()
            with open(path, "rb") as handle_file:
                for chunk in iter(partial(handle_file.read, 1 << 20), b""):
                    digest.update(chunk)
            if digest.hexdigest() == sha1:
                holders.append(str(node["name"]))
    return holders


# -- 6: a store is cut off from the network -----------------------------------

NFT_TABLE = "stretchfs_chaos"


def in_private_netns() -> bool:
    """True when this process runs in a named network namespace (`ip netns exec`)."""
    try:
        found = subprocess.run(["ip", "netns", "identify", str(os.getpid())],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return found.returncode == 0 and bool(found.stdout.strip())


def _nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True, timeout=10,
                   capture_output=True)


def network_cut(handle: ClusterHandle, options: Options) -> Report:
    """6. A store keeps running but loses its peers: down for all, and it votes no one down."""
    report = Report("network-cut")
    if not in_private_netns() or shutil.which("nft") is None:
        report.notes.append("skipped: needs nft and a private network namespace (run the "
                            "cluster and this command under `ip netns exec`)")
        return report
    victim = handle.nodes("store")[0]
    host = victim["host"]
    survivors = _observers(handle, but=victim["name"])
    watch = VerdictWatch(handle.nodes(), handle.state["cluster_key"])
    load = _start_load(handle, options)
    votes_by_victim: set[str] = set()
    suspected = False
    try:
        # Cut the store off from its peers; the master and Redis (127.0.0.1) stay reachable,
        # so the store could still vote -- self-suspicion must keep it from doing so.
        _nft("table ip {t} {{\n chain input {{\n  type filter hook input priority -10;\n"
             "  ip saddr {h} ip daddr != 127.0.0.1 drop\n"
             "  ip daddr {h} ip saddr != 127.0.0.1 drop\n }}\n}}\n".format(t=NFT_TABLE, h=host))
        cut_at = time.monotonic()
        took = wait_until(lambda: watch.all_agree(survivors, victim["name"], False),
                          DETECTION_TIMEOUT_SECONDS)
        report.detection_seconds = took
        if took is None:
            report.fail("the cut-off store was not marked down by every other node")
        detected_at = time.monotonic()
        deadline = detected_at + options.settle_seconds * 2
        while time.monotonic() < deadline:
            status, view = _master_call(handle, "GET", "/pingnet/status")
            for row in (view or {}).get("peers", []):
                if victim["name"] in row.get("voters", []):
                    votes_by_victim.add(row["name"])
            code, own = http_get_json(victim["url"] + "/pingnet/status", timeout=1.0,
                                      key=handle.state["cluster_key"])
            suspected = suspected or bool((own or {}).get("self_suspect"))
            time.sleep(0.2)
        report.notes.append("failures during detection: {}".format(
            dict(load.failures(cut_at, detected_at)) or 0))
        after = load.failures(detected_at)
        if after:
            report.fail("failures after detection: {}".format(dict(after)))
        if votes_by_victim:
            report.fail("the cut-off store voted against {}".format(sorted(votes_by_victim)))
        report.notes.append("the cut-off store suspected itself: {}".format(suspected))
    finally:
        subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE], timeout=10,
                       capture_output=True)
        _heal(handle, victim["name"], watch, report)
        _finish(load, report, handle)
    false = watch.false_downs({victim["name"]})
    if false:
        report.fail("peers falsely marked down: {}".format(sorted(false)))
    return report


# -- store-lost, store-returns, bit-rot, drain: redundancy heals itself ---------
#
# Each runs the same skeleton (`_under_load`): the victim store is up on every
# node, the load starts, the scenario hurts the victim and waits for the cluster
# to heal (checking its own promises as it goes), then the load stops, every
# purchased content must download with its SHA1, the victim is healed and
# nothing acknowledged may be lost.

SCRUB_TIMEOUT_SECONDS = 60.0
# The victim's scrub during bit-rot: a pass every second, fast enough for a few
# hundred small files (each costs at least 256 KiB of the rate).
FAST_SCRUB = {"period": "1.0", "rate": '"64 MiB"'}


@dataclass
class Under:
    """A redundancy scenario in progress: the cluster, its load and the store it hurts."""

    handle: ClusterHandle
    options: Options
    report: Report
    victim: str
    watch: VerdictWatch
    load: Load

    def wait(self, what: str, check: Callable[[], bool], timeout: float,
             missing: Callable[[], str], step: float = 0.5) -> float | None:
        """Poll `check` for `timeout` seconds; a note with the time it took (`what`), or
        a broken promise saying what is `missing`."""
        took = wait_until(check, timeout, step=step)
        if took is None:
            self.report.fail("after {:.0f} s: {}".format(timeout, missing()))
        else:
            self.report.notes.append("{} after {:.1f} s".format(what, took))
        return took

    def no_failures(self, since: float, when: str) -> None:
        """No client call that started after `since` failed."""
        failures = self.load.failures(since)
        if failures:
            self.report.fail("failures {}: {}, such as {}".format(
                when, dict(failures), self.load.examples(since)))


def _under_load(handle: ClusterHandle, options: Options, scenario: str,
                act: Callable[[Under], object], victim: str = "") -> Report:
    """Run `act` on `victim` (default: the last store) under the client load, then
    check that every purchased content downloads with its SHA1; heal the victim and
    check that nothing acknowledged was lost."""
    report = Report(scenario)
    victim = victim or handle.nodes("store")[-1]["name"]
    watch = VerdictWatch(handle.nodes(), handle.state["cluster_key"])
    if wait_until(lambda: watch.all_agree(_observers(handle), victim, True),
                  HEAL_TIMEOUT_SECONDS, step=0.2) is None:
        report.fail("{} not available on every node before the scenario".format(victim))
    load = _start_load(handle, options)
    try:
        act(Under(handle, options, report, victim, watch, load))
        load.stop()
        _check_downloads(handle, load.items, report)
    finally:
        _heal(handle, victim, watch, report)
        _finish(load, report, handle)
    return report


def _repair_settings(handle: ClusterHandle) -> tuple[int, float]:
    """`replicas` and `lost_after` as the master's `GET /repair/status` reports them."""
    code, status = _master_call(handle, "GET", "/repair/status")
    if code != 200:
        raise RuntimeError("GET /repair/status answered {}".format(code))
    return int(status["replicas"]), float(status["lost_after"])


def _held_by(handle: ClusterHandle, store: str) -> list[str]:
    """The hashes the master's inventory has on `store`."""
    status, data = http_call("GET", handle.state["master_url"] + "/inventory/store/" + store,
                             key=handle.state["cluster_key"], timeout=30)
    if status != 200:
        raise RuntimeError("inventory of {} answered {}".format(store, status))
    return [decode_json(line)["hash"] for line in data.splitlines() if line.strip()]


def _listed(handle: ClusterHandle, hashes: list[str]) -> dict[str, set[str]]:
    """The stores the master's inventory lists for each of `hashes`."""
    found: dict[str, set[str]] = {}
    for start in range(0, len(hashes), 1000):
        code, rows = _master_call(handle, "POST", "/inventory/lookup",
                                  {"hashes": hashes[start:start + 1000]})
        if code != 200:
            raise RuntimeError("inventory lookup answered {}".format(code))
        found.update({h: set((row or {}).get("stores", [])) for h, row in rows.items()})
    return {h: found.get(h, set()) for h in hashes}


def _short_of(handle: ClusterHandle, hashes: list[str], gone: str, replicas: int) -> list[str]:
    """Those of `hashes` with fewer than `replicas` listed holders other than `gone`."""
    return [h for h, stores in _listed(handle, hashes).items()
            if len(stores - {gone}) < replicas]


def _lose(run: Under) -> tuple[list[str], int]:
    """Kill the victim for good; it must be detected, and once lost (`lost_after`) every
    hash it held must be back to `replicas` copies within `repair_seconds`, with no
    download failing after detection.  The hashes it held, and `replicas`."""
    handle, victim, report = run.handle, run.victim, run.report
    held = _held_by(handle, victim)
    replicas, lost_after = _repair_settings(handle)
    handle.signal(victim, signal.SIGKILL)
    took = wait_until(lambda: run.watch.all_agree(_observers(handle, but=victim), victim, False),
                      DETECTION_TIMEOUT_SECONDS)
    report.detection_seconds = took
    detected_at = time.monotonic()
    if took is None:
        report.fail("{} not marked down by every survivor".format(victim))
    run.wait("{} hashes of {} back to {} copies (lost_after {:.0f} s) after detection".format(
        len(held), victim, replicas, lost_after),
        lambda: not _short_of(handle, held, victim, replicas),
        lost_after + run.options.repair_seconds,
        lambda: "{} of {} hashes held by {} still short of {} copies".format(
            len(_short_of(handle, held, victim, replicas)), len(held), victim, replicas))
    run.no_failures(detected_at, "after detection")
    return held, replicas


def store_lost(handle: ClusterHandle, options: Options) -> Report:
    """8. A store is killed for good under load: once it is lost (`[repair] lost_after`
    after detection) every hash it held is copied back to `replicas` counted copies
    within `repair_seconds`, no download fails after detection, and every uploaded
    content still downloads with its SHA1.  The store is restarted at the end."""
    return _under_load(handle, options, "store-lost", _lose)


def _returns(run: Under) -> None:
    handle, victim, report = run.handle, run.victim, run.report
    held, replicas = _lose(run)
    trims = _trims(handle)
    handle.start(victim)        # the same config: the same data dir, with every copy
    dropped: set[str] = set()

    def trimmed() -> bool:
        listed = _listed(handle, held)
        dropped.update(h for h, stores in listed.items() if len(stores) < replicas)
        return all(len(stores) <= replicas for stores in listed.values())

    run.wait("the {} hashes {} brought back trimmed to {} copies".format(
        len(held), victim, replicas), trimmed, run.options.repair_seconds,
        lambda: "{} of the hashes {} brought back still over {} copies".format(
            sum(len(s) > replicas for s in _listed(handle, held).values()), victim, replicas),
        step=0.2)
    if dropped:
        report.fail("{} hashes dropped below {} copies during the trim: {}".format(
            len(dropped), replicas, sorted(dropped)[:3]))
    report.notes.append("{} copies trimmed".format(_trims(handle) - trims))
    on_disk = {h: len(_stores_holding(handle, h)) for h in held}
    wrong = {h[:8]: n for h, n in on_disk.items() if n != replicas}
    if wrong:
        report.fail("hashes on a number of stores' disks other than {}: {}".format(
            replicas, wrong))


def _trims(handle: ClusterHandle) -> int:
    _, status = _master_call(handle, "GET", "/repair/status")
    return int((status or {}).get("repaired", {}).get("trims", 0))


def store_returns(handle: ClusterHandle, options: Options) -> Report:
    """10. A store lost for good (as in store-lost) comes back with its data once its
    content was copied again: the content over `replicas` copies is trimmed back to
    `replicas` within `repair_seconds` (checked on every store's disk at the end), and
    no content ever has fewer than `replicas` listed copies while it happens."""
    return _under_load(handle, options, "store-returns", _returns)


def config_with(text: str, section: str, values: dict[str, str]) -> str:
    """TOML `text` with `values` (already TOML literals) set in `[section]`: right after
    its header when it has one, else in a new section at the end."""
    lines = ["{} = {}".format(key, value) for key, value in values.items()]
    kept = text.splitlines()
    header = "[{}]".format(section)
    if header in (line.strip() for line in kept):
        at = [line.strip() for line in kept].index(header) + 1
        return "\n".join(kept[:at] + lines + kept[at:]) + "\n"
    return "\n".join(kept + ["", header] + lines) + "\n"


def _restart_with(handle: ClusterHandle, name: str, config_text: str) -> None:
    """Stop node `name`, replace its config, and start it again."""
    handle.stop(name)
    write_private(handle.node(name)["config"], config_text)
    handle.start(name)


def _flip_byte(path: str) -> None:
    """Invert one byte in the middle of the file at `path`, in place."""
    with open(path, "r+b") as stored:
        size = os.fstat(stored.fileno()).st_size
        stored.seek(size // 2)
        byte = stored.read(1)
        stored.seek(size // 2)
        stored.write(bytes([byte[0] ^ 0xFF]))


def corrupt_found(log_path: str) -> set[str]:
    """The hashes a store's log says its scrub found corrupt."""
    return {str(event["name"]).split(".")[0] for event in read_events(log_path)
            if event.get("event") == "scrub_corrupt"}


def _rot(run: Under) -> None:
    handle, victim, report = run.handle, run.victim, run.report
    node = handle.node(victim)
    replicas, _ = _repair_settings(handle)
    held = set(_held_by(handle, victim))
    store = ContentStore(node["root"])
    known = corrupt_found(node["log"])
    paths = {}
    for sha1 in sorted({item.sha1 for item in list(run.load.items) if item.sha1 in held}):
        found = store.find(sha1)
        if found is not None and sha1 not in known:
            paths[sha1] = found.path
    if not paths:
        report.fail("{} holds none of the purchased content on disk".format(victim))
        return
    rotten = sorted(paths)
    for path in paths.values():
        _flip_byte(path)
    report.notes.append("flipped a byte in {} files of {}".format(len(rotten), victim))
    flipped_at = time.monotonic()
    report.detection_seconds = run.wait(
        "every corrupt file found by {}'s scrub".format(victim),
        lambda: corrupt_found(node["log"]) >= set(rotten), SCRUB_TIMEOUT_SECONDS,
        lambda: "{} of {} corrupt files not found by the scrub".format(
            len(set(rotten) - corrupt_found(node["log"])), len(rotten)))
    found_at = time.monotonic()
    report.notes.append("failures before the scrub found them: {}".format(
        dict(run.load.failures(flipped_at, found_at)) or 0))

    def restored() -> bool:
        listed = _listed(handle, rotten)
        return all(len(listed[h]) >= replicas and listed[h] == set(_stores_holding(handle, h))
                   for h in rotten)

    run.wait("a good copy of each restored: {} listed copies, each verified on disk".format(
        replicas), restored, run.options.repair_seconds,
        lambda: "not restored to {} good copies: {}".format(replicas, {
            h[:8]: (sorted(_listed(handle, [h])[h]), _stores_holding(handle, h))
            for h in rotten if not restored()}))
    # A download that the prism sent to the victim before the store's removal reached
    # it may miss (404); once it did, none may fail, and none may ever be corrupt.
    served = run.load.failures(found_at)
    if served["corrupt"] or served["download-wrong-hash"]:
        report.fail("a corrupt copy was served after the scrub found it")
    run.no_failures(found_at + PROPAGATION_SECONDS, "once the corrupt copies were found")


def bit_rot(handle: ClusterHandle, options: Options) -> Report:
    """11. Bytes are flipped on disk in every purchased file one store holds, its scrub
    running fast (`[scrub] period` 1 s for the scenario): the scrub finds each within
    a minute, no download gets corrupt bytes after that (nor fails once the removal
    reached the prisms), and each content is back to `replicas` good copies within
    `repair_seconds`.  The store's own config is restored at the end."""
    victim = handle.nodes("store")[-1]["name"]
    config = handle.node(victim)["config"]
    with open(config, encoding="utf-8") as original_file:
        original = original_file.read()
    report = Report("bit-rot")
    try:
        _restart_with(handle, victim, config_with(original, "scrub", FAST_SCRUB))
        report = _under_load(handle, options, "bit-rot", _rot, victim)
    finally:
        _restart_with(handle, victim, original)
        _heal(handle, victim, VerdictWatch(handle.nodes(), handle.state["cluster_key"]),
              report)
    return report


def _draining(handle: ClusterHandle, store: str) -> int | None:
    """How many hashes `store` holds that are still short of copies elsewhere, as
    `GET /repair/status` counts them."""
    _, status = _master_call(handle, "GET", "/repair/status")
    return (status or {}).get("draining", {}).get(store)


def _drain(run: Under) -> None:
    handle, victim, report = run.handle, run.victim, run.report
    code, _ = _master_call(handle, "POST", "/peers/{}/drain".format(victim))
    if code != 200:
        report.fail("drain of {} answered {}".format(victim, code))
        return
    run.wait("{} drained".format(victim), lambda: _draining(handle, victim) == 0,
             run.options.repair_seconds,
             lambda: "{} hashes still only on {}".format(_draining(handle, victim), victim))
    code, _ = _master_call(handle, "POST", "/peers/{}/remove".format(victim))
    if code != 200:
        report.fail("remove of drained {} answered {}".format(victim, code))
    prisms = [n["name"] for n in handle.nodes("prism")]
    run.wait("every prism dropped removed {}".format(victim),
             lambda: all(not (run.watch.view(p) or {victim: True}).get(victim, False)
                         for p in prisms), REGISTRY_TIMEOUT_SECONDS,
             lambda: "a prism still routes to removed {}".format(victim))
    handle.signal(victim, signal.SIGTERM)
    wait_until(lambda: not handle.is_running(victim), DETECTION_TIMEOUT_SECONDS)
    time.sleep(run.options.settle_seconds)  # downloads go on with the store stopped
    run.no_failures(0.0, "during the drain")


def drain(handle: ClusterHandle, options: Options) -> Report:
    """9. A store is drained under load: once everything it holds has its copies
    elsewhere (within `repair_seconds`) it is removed without --force, and stopped once
    every prism has dropped it from its registry copy (`[ping] registry_refresh`); no
    download fails and every uploaded content still downloads with its SHA1.  The store
    is restarted (it registers again) at the end."""
    return _under_load(handle, options, "drain", _drain)


def _check_downloads(handle: ClusterHandle, items: list[Item], report: Report) -> None:
    """Every purchased item downloads with its SHA1."""
    user = PrismUser(handle.nodes("prism")[0]["url"], handle.user["username"],
                     handle.user["password"])
    user.login()
    bad = []
    try:
        for item in items:
            try:
                user.download(item.token, "file." + item.ext, item.sha1)
            except CallFailed as exc:
                bad.append("{}: {}".format(item.sha1[:8], exc))
    finally:
        user.close()
    if bad:
        report.fail("{} of {} contents do not download: {}".format(len(bad), len(items),
                                                                 bad[:3]))


def redis_failover(handle: ClusterHandle, options: Options) -> Report:
    """10. The Redis primary is SIGKILLed under load (stretchfs/chaos/redisha.py)."""
    from stretchfs.chaos.redisha import redis_failover as run

    return run(handle, options)


def redis_partition(handle: ClusterHandle, options: Options) -> Report:
    """11. The Redis primary is cut off, then rejoins (stretchfs/chaos/redisha.py)."""
    from stretchfs.chaos.redisha import redis_partition as run

    return run(handle, options)


SCENARIOS: dict[str, Callable[[ClusterHandle, Options], Report]] = {
    "store-kill": store_kill,
    "store-hang": store_hang,
    "prism-restart": prism_restart,
    "master-down": master_down,
    "redis-down": redis_down,
    "store-kill-upload": store_kill_upload,
    "network-cut": network_cut,
    "store-lost": store_lost,
    "drain": drain,
    "store-returns": store_returns,
    "bit-rot": bit_rot,
    "redis-failover": redis_failover,
    "redis-partition": redis_partition,
}


def _master_kill(handle: ClusterHandle, options: Options) -> Report:
    from stretchfs.chaos.ha import master_kill  # ha.py builds on this module

    return master_kill(handle, options)


SCENARIOS["master-kill"] = _master_kill
