"""Repair benchmark: re-replication after a store is lost, against a plain copy in the same run.

A local cluster (`stretchfs.devcluster`: 1 prism, 4 stores on their own
loopback addresses, replicas 2, `[repair] lost_after` a few seconds) is
filled with --files files of mixed sizes (--large-share of them 1-8 MiB,
the rest 4-64 KiB), then:

(a) baseline, a plain store-to-store copy of the same bytes: every content
    the last store holds is copied by a survivor that lacks it from the
    survivor that has it, with `POST /content/fetch` driven directly by
    --copy-jobs parallel callers (then removed again, untimed).  That is the
    route a repair copy takes (the target streams from the source's
    delivery, checks the SHA1, fsyncs and publishes), without the planner:
    the ratio below is what planning, its per-store limits and its
    round trips cost.  A copy outside StretchFS (GET + write + fsync) would
    also charge the repair for the store's own write path, which upload
    benchmarks measure already;
(b) repair: the last store is killed for good (SIGKILL by PID); from the
    moment the master's `/repair/status` says it is lost until the
    master's inventory feed (followed as a prism does) shows every content it
    held back at 2 holders.  Printed: MiB/s and its ratio to (a) (target >= 0.5x), and
    the small files repaired per second (target >= 500/s; counted from
    "lost" until the last small file was back, large copies interleaved);
(c) delivery while repairing: purchased downloads of small files (the
    client follows the prism's 302 and checks the SHA1) at a fixed --rate
    from --load-threads threads run from before the kill to --quiet-seconds
    after the repair; p99 of those started while the repair ran, against
    the p99 of the --quiet-seconds after it (same stores, same load, no
    repair; target <= 2x), and the p99 before the kill for reference.

Server CPU (user + system from /proc/PID/stat) of the master, the stores,
the prism and Redis is printed for (a) and (b), per copy, and per store for (b);
the batches the stores logged during (b) are counted.  With --profile DIR,
py-spy (--py-spy) samples the master and the stores while the repair runs
and writes one raw flamegraph file per process there (idle threads included:
a wait shows as its blocking call).  `[repair]` settings can be
tuned with --per-store, --batch-items, --batch-bytes and --interval (defaults: the master's).  Every
process is started here and stopped by its own PID.

    .venv/bin/python bench/repair_bench.py [--files 2000] [--large-share 0.02]
        [--copy-jobs 4] [--per-store 2] [--batch-items 100] [--batch-bytes N] [--interval 2]
        [--lost-after 5] [--rate 40] [--load-threads 4] [--quiet-seconds 15] [--profile DIR]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from stretchfs.chaos.client import CallFailed, PrismUser  # noqa: E402
from stretchfs.chaos.cluster import ClusterHandle  # noqa: E402
from stretchfs.chaos.load import PROPAGATION_SECONDS  # noqa: E402
from stretchfs.client import Client  # noqa: E402
from stretchfs.config import RepairSettings  # noqa: E402
from stretchfs.devcluster.cluster import LocalCluster, stop_detached  # noqa: E402
from stretchfs.devcluster.process import decode_json, http_call  # noqa: E402

KIB, MIB = 1024, 1024 * 1024
SMALL = (4 * KIB, 64 * KIB)
LARGE = (1 * MIB, 8 * MIB)
REPLICAS = 2
LOOKUP_CHUNK = 1000
POLL_SECONDS = 0.5
SETTLE_TIMEOUT_SECONDS = 300.0
LOST_TIMEOUT_SECONDS = 120.0
PLANNER_READS = ("zrangebyscore", "hmget")    # the planner's look at the queue's head
TARGET_RATIO, TARGET_SMALL_PER_SECOND, TARGET_P99_RATIO = 0.5, 500.0, 2.0


@dataclass
class TunedCluster(LocalCluster):
    """A local cluster whose master gets extra `[repair]` settings."""

    repair_lines: list[str] = field(default_factory=list)

    def write_configs(self, logins: dict[str, tuple[str, str]]) -> None:
        """As `LocalCluster`, then the master's `[repair]` section (its last) gets our keys."""
        super().write_configs(logins)
        with open(self.nodes[0].config, "a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in self.repair_lines))


@dataclass(frozen=True)
class File:
    """One uploaded content."""

    sha1: str
    ext: str
    size: int


@dataclass
class Api:
    """Calls to the master and the stores with the cluster key."""

    handle: ClusterHandle
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = self.handle.state["cluster_key"]

    def call(self, url: str, method: str, path: str, body: Any = None,
             timeout: float = 30.0) -> Any:
        """JSON answer of one call; a non-2xx answer raises."""
        status, data = http_call(method, url + path, body, key=self.key, timeout=timeout)
        if not 200 <= status < 300:
            raise RuntimeError("{} {}{} answered {}: {!r}".format(method, url, path, status,
                                                                  data[:200]))
        return decode_json(data)

    def master(self, method: str, path: str, body: Any = None) -> Any:
        """One call to the master."""
        return self.call(self.handle.state["master_url"], method, path, body)

    def holders(self, hashes: list[str]) -> dict[str, set[str]]:
        """The stores the master's inventory lists for each of `hashes`."""
        found: dict[str, set[str]] = {}
        for start in range(0, len(hashes), LOOKUP_CHUNK):
            rows = self.master("POST", "/inventory/lookup",
                               {"hashes": hashes[start:start + LOOKUP_CHUNK]})
            found.update({h: set((row or {}).get("stores", [])) for h, row in rows.items()})
        return found

    def store_state(self, name: str) -> str:
        """up, down or lost, as the repair planner last recorded `name`."""
        stores = self.master("GET", "/repair/status").get("stores", {})
        return str((stores.get(name) or {}).get("state", "up"))


def wait_for(check: Callable[[], bool], timeout: float, what: str, step: float) -> float:
    """Seconds until `check()` holds; raises after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit("timed out after {:.0f} s waiting for {}".format(timeout, what))
        time.sleep(step)
    return time.monotonic() - started


# -- the files ---------------------------------------------------------------

def make_sizes(count: int, large_share: float, rng: random.Random) -> list[int]:
    """`count` sizes: `large_share` of them in LARGE, the rest in SMALL, shuffled."""
    large = round(count * large_share)
    sizes = [rng.randint(*LARGE) for _ in range(large)]
    sizes += [rng.randint(*SMALL) for _ in range(count - large)]
    rng.shuffle(sizes)
    return sizes


def upload_all(prism: str, user: dict[str, str], sizes: list[int], jobs: int) -> list[File]:
    """Upload a file of each size (random bytes) from `jobs` threads sharing one session
    (filling is not measured: the client retries a 503 as an application would)."""
    with Client(prism, user["username"], user["password"], timeout=60) as first:
        token = first.login().token
    local = threading.local()
    clients: list[Client] = []
    lock = threading.Lock()

    def upload(size: int) -> File:
        if not hasattr(local, "client"):
            local.client = Client(prism, token=token, timeout=60)
            with lock:
                clients.append(local.client)
        content = local.client.upload(io.BytesIO(os.urandom(size)), name="file.bin")
        return File(content.hash, "bin", size)

    try:
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            return list(pool.map(upload, sizes))
    finally:
        for client in clients:
            client.close()


# -- server CPU --------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (0 once it is gone)."""
    try:
        with open("/proc/{}/stat".format(pid)) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(handle: ClusterHandle) -> dict[str, list[int]]:
    """PIDs of the running nodes by role, and Redis's."""
    pids: dict[str, list[int]] = {}
    for node in handle.nodes():
        if handle.is_running(node["name"]):
            pids.setdefault(node["role"], []).append(int(node["pid"]))
    pids["redis"] = [int(handle.state["redis"]["pid"])]
    return pids


def cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each role."""
    return {role: sum(cpu_seconds(p) for p in group) for role, group in pids.items()}


def cpu_line(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    """CPU seconds per role between two snapshots, with the share of one core."""
    return ", ".join("{} {:.1f} s ({:.0f} %)".format(role, after[role] - before[role],
                                                     100 * (after[role] - before[role])
                                                     / seconds)
                     for role in before)


def redis_calls(handle: ClusterHandle) -> Counter[str]:
    """Calls so far per command of the cluster's Redis (`INFO commandstats`)."""
    redis = handle.state["redis"]
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(redis["port"]), "INFO",
                          "commandstats"], env=dict(os.environ,
                                                    REDISCLI_AUTH=redis["admin_password"]),
                         capture_output=True, text=True, timeout=30, check=True).stdout
    calls: Counter[str] = Counter()
    for line in out.splitlines():
        name, _, stats = line.partition(":")
        if name.startswith("cmdstat_"):
            calls[name[len("cmdstat_"):]] = int(stats.split(",")[0].split("=")[1])
    return calls


def redis_line(spent: Counter[str], seconds: float, idle: Counter[str], idle_seconds: float,
               copies: int) -> str:
    """The commands the cluster sent most in `seconds`, less what it sends in as long
    without copies (`idle` in `idle_seconds`: ping net, feeds, downloads), per copy."""
    extra = {name: (count - idle[name] * seconds / idle_seconds) / copies
             for name, count in spent.items()}
    top = sorted(extra.items(), key=lambda item: -item[1])[:6]
    top += [(name, extra.get(name, 0.0)) for name in PLANNER_READS if name not in dict(top)]
    return "{:.1f} per copy beyond the idle rate: {}".format(sum(extra.values()), ", ".join(
        "{} {:.2f}".format(name, count) for name, count in top))


def store_cpu_line(handle: ClusterHandle, before: dict[str, float], seconds: float) -> str:
    """CPU seconds of each running store since `before` (by name)."""
    now = store_cpu(handle)
    return ", ".join("{} {:.1f} s ({:.0f} %)".format(name, now[name] - before[name],
                                                     100 * (now[name] - before[name]) / seconds)
                     for name in before if name in now)


def store_cpu(handle: ClusterHandle) -> dict[str, float]:
    """CPU seconds so far of each running store, by name."""
    return {node["name"]: cpu_seconds(int(node["pid"])) for node in handle.nodes("store")
            if handle.is_running(node["name"])}


def log_sizes(handle: ClusterHandle) -> dict[str, int]:
    """Bytes so far of each store's log."""
    return {node["name"]: os.path.getsize(node["log"]) for node in handle.nodes("store")
            if os.path.exists(node["log"])}


def batch_line(handle: ClusterHandle, since: dict[str, int]) -> str:
    """The batches the stores logged after `since` (log offsets): count, content copied,
    content per batch."""
    batches = copied = 0
    for node in handle.nodes("store"):
        if node["name"] not in since:
            continue
        with open(node["log"], "rb") as handle_:
            handle_.seek(since[node["name"]])
            for line in handle_:
                if b"in one batch" not in line:
                    continue
                event = json.loads(line)
                batches += 1
                copied += int(event.get("copied", 0))
    return "{} batches, {} content copied, {:.0f} per batch".format(
        batches, copied, copied / batches if batches else 0.0)


class Profiler:
    """py-spy recording the master and the stores (raw flamegraph files, one a process)."""

    def __init__(self, py_spy: str, folder: str, handle: ClusterHandle) -> None:
        self._spies: list[subprocess.Popen[bytes]] = []
        os.makedirs(folder, exist_ok=True)
        for node in handle.nodes():
            if node["role"] in ("master", "store") and handle.is_running(node["name"]):
                out = os.path.join(folder, "{}.txt".format(node["name"]))
                self._spies.append(subprocess.Popen(
                    [py_spy, "record", "--nonblocking", "--threads", "--idle", "-r", "100",
                     "-f", "raw", "-d", "600", "-p", str(node["pid"]), "-o", out],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        """Stop every recorder (it writes its file on SIGINT) and wait for it."""
        for spy in self._spies:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
        for spy in self._spies:
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(10)


# -- (a) the plain copy --------------------------------------------------------

def plain_copy(api: Api, files: list[File], holders: dict[str, set[str]], victim: str,
               jobs: int) -> tuple[float, list[tuple[str, str]]]:
    """Copy each of `files` from its survivor holder to a survivor that lacks it
    (round robin), `jobs` at a time: (seconds, (store, sha1) copies made)."""
    urls = {n["name"]: n["url"] for n in api.handle.nodes("store")}
    survivors = sorted(n for n in urls if n != victim)
    plan = []
    for index, item in enumerate(files):
        source = sorted(holders[item.sha1] - {victim})[0]
        lacking = [s for s in survivors if s not in holders[item.sha1]]
        plan.append((item, source, lacking[index % len(lacking)]))

    def copy(step: tuple[File, str, str]) -> tuple[str, str]:
        item, source, target = step
        api.call(urls[target], "POST", "/content/fetch",
                 {"hash": item.sha1, "ext": item.ext, "from": source}, timeout=600)
        return target, item.sha1

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        made = list(pool.map(copy, plan))
    return time.monotonic() - started, made


def undo_copies(api: Api, made: list[tuple[str, str]], expected: dict[str, set[str]]) -> None:
    """Remove the plain copies again and wait until the inventory is as before."""
    urls = {n["name"]: n["url"] for n in api.handle.nodes("store")}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda step: api.call(urls[step[0]], "POST", "/content/remove",
                                            {"hash": step[1]}), made))
    hashes = [sha1 for _, sha1 in made]
    wait_for(lambda: api.holders(hashes) == {h: expected[h] for h in hashes},
             SETTLE_TIMEOUT_SECONDS, "the plain copies to leave the inventory", POLL_SECONDS)


# -- (b) following the repair ---------------------------------------------------

def feed_cursor(api: Api) -> str:
    """The inventory feed's cursor now (the first line of `GET /inventory/snapshot`)."""
    status, data = http_call("GET", api.handle.state["master_url"] + "/inventory/snapshot",
                             key=api.key, timeout=120)
    if status != 200:
        raise RuntimeError("GET /inventory/snapshot answered {}".format(status))
    return str(decode_json(data.split(b"\n", 1)[0])["cursor"])


def follow_repair(api: Api, cursor: str, held: list[File], holders: dict[str, set[str]],
                  victim: str, lost_at: float, timeout: float) -> dict[str, float]:
    """Follow the master's inventory feed (long polls, as a prism does: the cost does not
    grow with the content still short) until every content of `held` has REPLICAS
    holders besides `victim`: seconds after `lost_at` at which each got there."""
    have = {f.sha1: set(holders[f.sha1]) - {victim} for f in held}
    done_at: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done_at) < len(have):
        if time.monotonic() > deadline:
            raise SystemExit("{} content still short of copies after {:.0f} s".format(
                len(have) - len(done_at), timeout))
        page = api.master("GET", "/inventory/feed?after={}&wait=1&limit=1000".format(
            urllib.parse.quote(cursor, safe="")))
        now = time.monotonic() - lost_at
        cursor = str(page["cursor"])
        for change in page["changes"]:
            stores = have.get(change["hash"])
            if stores is None or change["hash"] in done_at or change["store"] == victim:
                continue
            (stores.add if change["op"] == "add" else stores.discard)(change["store"])
            if len(stores) >= REPLICAS:
                done_at[change["hash"]] = now
    return done_at


def check_repaired(api: Api, held: list[File], victim: str) -> None:
    """The master's rows agree with the feed: every content of `held` has its copies."""
    rows = api.holders([f.sha1 for f in held])
    short = [h for h, stores in rows.items() if len(stores - {victim}) < REPLICAS]
    if short:
        raise SystemExit("the feed and the master's rows disagree: {} short".format(len(short)))


# -- (c) delivery load ----------------------------------------------------------

class Downloads:
    """Purchased downloads at a fixed total rate; each result kept with its start time."""

    def __init__(self, prism: str, user: dict[str, str], items: list[tuple[File, str]],
                 rate: float, threads: int) -> None:
        self.results: list[tuple[float, float, str]] = []  # (started, seconds, failure kind)
        self._prism, self._user, self._items = prism, user, items
        self._interval = threads / rate
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def start(self) -> None:
        """Start the threads."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop and join the threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, index: int) -> None:
        user = PrismUser(self._prism, self._user["username"], self._user["password"],
                         timeout=30)
        rng = random.Random(index)
        next_at = time.monotonic() + index * self._interval / len(self._threads)
        try:
            while not self._stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at = max(next_at + self._interval, time.monotonic())
                item, token = rng.choice(self._items)
                started = time.monotonic()
                try:
                    user.download(token, "file." + item.ext, item.sha1)
                    kind = ""
                except CallFailed as exc:
                    kind = exc.kind
                with self._lock:
                    self.results.append((started, time.monotonic() - started, kind))
        finally:
            user.close()

    def window(self, since: float, until: float) -> tuple[list[float], Counter[str]]:
        """Latencies of the downloads started in [since, until) that worked, and the
        failures by kind."""
        with self._lock:
            picked = [r for r in self.results if since <= r[0] < until]
        return sorted(r[1] for r in picked if not r[2]), Counter(r[2] for r in picked if r[2])


def p99(latencies: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    if not latencies:
        return float("nan")
    return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]


def delivery_line(name: str, latencies: list[float], failed: Counter[str]) -> str:
    """Count, p50 and p99 of one window, and its failures."""
    return "{}: {} downloads, p50 {:.1f} ms, p99 {:.1f} ms, {} failed{}".format(
        name, len(latencies), 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        1000 * p99(latencies), sum(failed.values()), " {}".format(dict(failed)) if failed
        else "")


# -- the run ------------------------------------------------------------------

def run(args: argparse.Namespace, workdir: str) -> int:
    """Fill the cluster, copy plainly, lose a store, and print the figures."""
    rng = random.Random(args.seed)
    sizes = make_sizes(args.files, args.large_share, rng)
    large = [s for s in sizes if s >= LARGE[0]]
    print("mix: {} files, {:.0f} MiB: {} small ({}-{} KiB, {:.0f} MiB), {} large "
          "({}-{} MiB, {:.0f} MiB)".format(
              len(sizes), sum(sizes) / MIB, len(sizes) - len(large), SMALL[0] // KIB,
              SMALL[1] // KIB, (sum(sizes) - sum(large)) / MIB, len(large), LARGE[0] // MIB,
              LARGE[1] // MIB, sum(large) / MIB))
    defaults = RepairSettings()
    per_store = args.per_store or defaults.per_store
    interval = args.interval or defaults.interval
    batch_items = args.batch_items or defaults.batch_items
    batch_bytes = args.batch_bytes or defaults.batch_bytes
    cluster = TunedCluster(workdir, prisms=1, stores=4, say=lambda _: None,
                           lost_after=args.lost_after,
                           repair_lines=["per_store = {}".format(per_store),
                                         "interval = {!r}".format(float(interval)),
                                         "batch_items = {}".format(batch_items),
                                         "batch_bytes = {}".format(batch_bytes)])
    cluster.up(detach=True, timeout=180)
    handle = ClusterHandle(workdir)
    api = Api(handle)
    prism, user = handle.state["prism_url"], handle.user
    print("cluster: 1 prism, 4 stores, replicas {}; [repair] per_store {}, interval {:g} s, "
          "lost_after {:g} s, batches of {} content and {} MiB under {} KiB; load average "
          "before: {}".format(REPLICAS, per_store, interval, args.lost_after, batch_items,
                              batch_bytes / MIB, defaults.batch_under // KIB,
                              " ".join(open("/proc/loadavg").read().split()[:3])))

    started = time.monotonic()
    files = upload_all(prism, user, sizes, args.upload_jobs)
    took = time.monotonic() - started
    print("uploaded in {:.1f} s ({:.0f} files/s, {:.0f} MiB/s)".format(
        took, len(files) / took, sum(sizes) / MIB / took))
    hashes = [f.sha1 for f in files]
    wait_for(lambda: all(len(s) == REPLICAS for s in api.holders(hashes).values()),
             SETTLE_TIMEOUT_SECONDS, "every upload to have its copies", POLL_SECONDS)
    holders = api.holders(hashes)
    victim = handle.nodes("store")[-1]["name"]
    held = [f for f in files if victim in holders[f.sha1]]
    held_bytes = sum(f.size for f in held)
    held_small = [f for f in held if f.size < LARGE[0]]
    print("{} holds {} files ({} small), {:.0f} MiB".format(victim, len(held), len(held_small),
                                                          held_bytes / MIB))
    pids = server_pids(handle)

    # (a)
    before, calls = cpu_snapshot(pids), redis_calls(handle)
    plain_seconds, made = plain_copy(api, held, holders, victim, args.copy_jobs)
    after = cpu_snapshot(pids)
    plain_cpu = cpu_line(before, after, plain_seconds)
    plain_cpu_ms = 1000 * (sum(after.values()) - sum(before.values())) / len(held)
    plain_calls = redis_calls(handle) - calls
    plain_rate = held_bytes / MIB / plain_seconds
    print("(a) plain copy (POST /content/fetch, {} at a time): {:.1f} s, {:.1f} MiB/s, "
          "{:.0f} files/s".format(args.copy_jobs, plain_seconds, plain_rate,
                                  len(held) / plain_seconds))
    print("    server CPU: {} ({:.1f} ms per copy)".format(plain_cpu, plain_cpu_ms))
    undo_copies(api, made, holders)

    # (b) and (c)
    smalls = [f for f in files if f.size < LARGE[0]]
    with Client(prism, user["username"], user["password"], timeout=60) as buyer:
        items = [(f, buyer.purchase(f.sha1, f.ext).token)
                 for f in rng.sample(smalls, min(200, len(smalls)))]
    time.sleep(PROPAGATION_SECONDS)      # the purchases reach the prism
    cursor = feed_cursor(api)
    load = Downloads(prism, user, items, args.rate, args.load_threads)
    load.start()
    try:
        time.sleep(args.quiet_seconds)
        killed_at = time.monotonic()
        handle.signal(victim, signal.SIGKILL)
        wait_for(lambda: api.store_state(victim) == "lost", args.lost_after +
                 LOST_TIMEOUT_SECONDS, "{} to be lost".format(victim), 0.1)
        lost_at = time.monotonic()
        before, calls = cpu_snapshot(pids), redis_calls(handle)
        stores_before, logs_before = store_cpu(handle), log_sizes(handle)
        profiler = Profiler(args.py_spy, args.profile, handle) if args.profile else None
        try:
            done_at = follow_repair(api, cursor, held, holders, victim, lost_at,
                                    args.repair_timeout)
        finally:
            if profiler is not None:
                profiler.stop()
        repair_seconds = max(done_at.values())
        repair_cpu = cpu_line(before, cpu_snapshot(pids), time.monotonic() - lost_at)
        repair_store_cpu = store_cpu_line(handle, stores_before, time.monotonic() - lost_at)
        repair_cpu_ms = 1000 * (sum(cpu_snapshot(pids).values()) - sum(before.values()))
        batches = batch_line(handle, logs_before)
        repair_calls = redis_calls(handle) - calls
        repair_window = time.monotonic() - lost_at
        done = lost_at + repair_seconds
        check_repaired(api, held, victim)
        time.sleep(max(0.0, done + 1.0 - time.monotonic()))
        calls = redis_calls(handle)
        time.sleep(args.quiet_seconds)
        idle_calls = redis_calls(handle) - calls
    finally:
        load.stop()
    repair_rate = held_bytes / MIB / repair_seconds
    small_seconds = max((done_at[f.sha1] for f in held_small), default=float("nan"))
    small_rate = len(held_small) / small_seconds
    print("(b) repair: {} lost {:.1f} s after the kill; every content back at {} copies "
          "{:.1f} s later: {:.1f} MiB/s, {:.0f} files/s".format(
              victim, lost_at - killed_at, REPLICAS, repair_seconds, repair_rate,
              len(held) / repair_seconds))
    print("    at most {} copies at once ({} survivors x [repair] per_store {}, two stores "
          "each); server CPU: {}".format(3 * per_store // 2, 3, per_store, repair_cpu))
    print("    server CPU {:.1f} ms per copy; by store: {}".format(repair_cpu_ms / len(held),
                                                                 repair_store_cpu))
    print("    stores logged " + batches)
    print("    Redis calls of the plain copy " + redis_line(
        plain_calls, plain_seconds, idle_calls, args.quiet_seconds, len(held)))
    print("    Redis calls of the repair " + redis_line(
        repair_calls, repair_window, idle_calls, args.quiet_seconds, len(held)))
    ratio = repair_rate / plain_rate
    print("    throughput vs plain copy: ratio {:.2f}x (target >= {:.1f}x) {}".format(
        ratio, TARGET_RATIO, "OK" if ratio >= TARGET_RATIO else "BELOW"))
    print("    small files: {} back in {:.1f} s: {:.0f} files/s (target >= {:.0f}/s) {}".format(
        len(held_small), small_seconds, small_rate, TARGET_SMALL_PER_SECOND,
        "OK" if small_rate >= TARGET_SMALL_PER_SECOND else "BELOW"))
    small_times = sorted(done_at[f.sha1] for f in held_small)
    if small_times:
        print("    small files back after: {}".format(", ".join(
            "{} % {:.1f} s".format(share, small_times[len(small_times) * share // 100 - 1])
            for share in (10, 50, 90, 100))))

    quiet, quiet_failed = load.window(done, done + args.quiet_seconds + 1.0)
    during, during_failed = load.window(lost_at, done)
    first, first_failed = load.window(0, killed_at)
    print("(c) delivery, {:g} downloads/s of {} small purchased files from {} threads:".format(
        args.rate, len(items), args.load_threads))
    print("    " + delivery_line("before the kill (4 stores)", first, first_failed))
    print("    " + delivery_line("during the repair", during, during_failed))
    print("    " + delivery_line("after the repair (3 stores)", quiet, quiet_failed))
    p99_ratio = p99(during) / p99(quiet)
    print("    p99 during / after the repair: ratio {:.2f}x (target <= {:.1f}x) {}".format(
        p99_ratio, TARGET_P99_RATIO, "OK" if p99_ratio <= TARGET_P99_RATIO else "ABOVE"))
    print("load average after: {}".format(" ".join(open("/proc/loadavg").read().split()[:3])))
    return 0


def main() -> int:
    """Parse the options, run, and always stop the cluster."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="files to upload")
    parser.add_argument("--large-share", type=float, default=0.02,
                        help="share of the files that are 1-8 MiB (the rest 4-64 KiB)")
    parser.add_argument("--copy-jobs", type=int, default=4,
                        help="parallel copies of the plain-copy baseline")
    parser.add_argument("--per-store", type=int, default=0,
                        help="[repair] per_store (default: the master's)")
    parser.add_argument("--batch-items", type=int, default=0,
                        help="[repair] batch_items (default: the master's)")
    parser.add_argument("--batch-bytes", type=int, default=0,
                        help="[repair] batch_bytes (default: the master's)")
    parser.add_argument("--interval", type=float, default=0.0,
                        help="[repair] interval in seconds (default: the master's)")
    parser.add_argument("--lost-after", type=float, default=5.0,
                        help="[repair] lost_after in seconds")
    parser.add_argument("--rate", type=float, default=40.0, help="downloads per second")
    parser.add_argument("--load-threads", type=int, default=4, help="download threads")
    parser.add_argument("--quiet-seconds", type=float, default=15.0,
                        help="download load before the kill and after the repair")
    parser.add_argument("--upload-jobs", type=int, default=8, help="parallel uploads")
    parser.add_argument("--repair-timeout", type=float, default=1800.0,
                        help="give up when the repair takes longer (seconds)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the size mix")
    parser.add_argument("--profile", default="",
                        help="folder for py-spy samples of the master and stores during (b)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy",
                        help="the py-spy program (with --profile)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="sfs-repair-bench-")
    workdir = os.path.join(folder, "cluster")
    try:
        return run(args, workdir)
    finally:
        stop_detached(workdir, say=lambda _: None)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
