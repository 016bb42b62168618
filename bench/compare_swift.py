"""StretchFS beside OpenStack Swift (issue 16): the same client, the same run, ratios.

Starts an OpenStack Swift all-in-one from Debian's packages (bench/swift_aio.py:
tempauth, tempurl, rings for 1 and 2 replicas, every server on 127.0.0.1) and
local StretchFS clusters (`LocalCluster`: 1 master, 1 prism, 2 stores, private
Redis; one with `[cluster] replicas = 1` on every node, one with 2), all side
by side, then measures each workload on both systems with the same client
code, in turns (--rounds; --large-rounds for large uploads) whose order swaps
every turn, so that load changes on the shared machine hit both alike:

  small     --small x 4 KiB uploads from --clients threads (one keep-alive
            connection each), at 1 and 2 replicas: uploads/s
  large     --large-rounds uploads of --large-mib MiB each, at 1 and 2 replicas:
            MiB/s over their summed time
  download  a purchased download end to end (--download-kib, default 4 KiB;
            several sizes: 4,1024), --connections keep-alive
            connections in --download-clients processes for --seconds (asyncio
            client: StretchFS GET /<purchase>/<file> at the prism and follow the
            302 to the store; Swift one tempurl GET at the proxy): downloads/s
  wrk       when wrk is installed, single hops with wrk (it cannot follow a 302
            to another host): Swift's tempurl GET, the prism's 302 alone, the
            store's signed GET alone

For each: the rate and the server CPU per request, summed over every server
process of that system and their children (Swift: proxy, account, container,
object servers and their workers, memcached; StretchFS: master, prism, stores,
nginx when --nginx, Redis), utime + stime from /proc/<pid>/stat before and
after; "idle" is the part of it the same processes spend without load,
measured for a few seconds after start-up.  Ratio = StretchFS / Swift (rate:
higher is better for StretchFS; CPU: lower is).  Swift is installed with
apt-get when missing and we are root; otherwise, or when the temp folder's
filesystem lacks user xattrs, Swift is skipped with the reason printed and
only StretchFS is measured.  Every process started is stopped by its PID.

    .venv/bin/python bench/compare_swift.py [--only small,large,download,wrk]
        [--rounds 2] [--small 1000] [--clients 8] [--large-mib 64] [--large-rounds 3]
        [--seconds 5] [--connections 50] [--download-kib 4] [--replicas 1,2] [--nginx]
        [--prism-workers 1] [--swift-workers auto]
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable
from urllib.parse import urlsplit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.delivery_bench import (  # noqa: E402
    IDLE_SECONDS,
    TICKS_PER_SECOND,
    _cpu_ticks,
    _server_roots,
    _upload_and_buy,
    _with_descendants,
    client_main,
    stop_configuration,
)
from bench.prism_bench import upload, wrk  # noqa: E402
from bench.swift_aio import (  # noqa: E402
    SwiftAIO,
    ensure_packages,
    swift_version,
    xattr_problem,
)
from stretchfs.devcluster import cluster as cluster_mod  # noqa: E402
from stretchfs.devcluster.process import decode_json, http_call  # noqa: E402

WORKLOADS = ("small", "large", "download", "wrk")
UPLOAD_DEADLINE_SECONDS = 300.0
TEMPURL_SECONDS = 3600.0


def say(text: str) -> None:
    """Print a line at once."""
    print(text, flush=True)


@dataclass
class Figure:
    """One system's result for one workload: `count` requests in `elapsed` s."""

    count: float
    elapsed: float
    ticks: float
    idle_ticks: float
    errors: int = 0
    mib: float = 0.0  # per request, for MiB/s rows

    @property
    def rate(self) -> float:
        """Requests (or MiB, for MiB/s rows) per second."""
        return self.count * (self.mib or 1.0) / self.elapsed

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request, ms."""
        return self.ticks * 1000.0 / TICKS_PER_SECOND / max(self.count, 1)

    @property
    def idle_ms(self) -> float:
        """The idle part of cpu_ms."""
        return self.idle_ticks * 1000.0 / TICKS_PER_SECOND / max(self.count, 1)

    def text(self) -> str:
        """'177.6/s, 9.20 ms' (or MiB/s) with errors when any."""
        rate = "{:.0f} MiB/s".format(self.rate) if self.mib else "{:.1f}/s".format(self.rate)
        errors = ", {} errors".format(self.errors) if self.errors else ""
        return "{}, {:.2f} ms (idle {:.2f}){}".format(rate, self.cpu_ms, self.idle_ms, errors)


def total(figures: list[Figure]) -> Figure:
    """The figures of several rounds as one (rates over the summed time)."""
    return Figure(sum(f.count for f in figures), sum(f.elapsed for f in figures),
                  sum(f.ticks for f in figures), sum(f.idle_ticks for f in figures),
                  sum(f.errors for f in figures), figures[0].mib)


class System:
    """One system under test: its server processes and their idle CPU rate."""

    def __init__(self, name: str, roots: Callable[[], list[int]]) -> None:
        self.name = name
        self.roots = roots
        self.idle_per_second = 0.0

    def pids(self) -> list[int]:
        """Every server process of the system now (roots and their descendants)."""
        return _with_descendants(self.roots())

    def measure_idle(self) -> None:
        """The system's CPU ticks per second without load."""
        pids = self.pids()
        start, ticks = time.monotonic(), _cpu_ticks(pids)
        time.sleep(IDLE_SECONDS)
        self.idle_per_second = (_cpu_ticks(pids) - ticks) / (time.monotonic() - start)

    def measure(self, work: Callable[[], tuple[float, int]], mib: float = 0.0) -> Figure:
        """Run `work` (-> requests done, errors) and the server CPU it cost."""
        pids = self.pids()
        start, ticks = time.monotonic(), _cpu_ticks(pids)
        count, errors = work()
        elapsed = time.monotonic() - start
        return Figure(count, elapsed, _cpu_ticks(pids) - ticks, self.idle_per_second * elapsed,
                      errors, mib)


# -- StretchFS -----------------------------------------------------------------------

class StretchCluster:
    """A LocalCluster (1 master, 1 prism, 2 stores) with `replicas` on every node."""

    def __init__(self, replicas: int, nginx: bool, workers: int) -> None:
        self.replicas = replicas
        self.local = cluster_mod.LocalCluster(tempfile.mkdtemp(prefix="sfs-vs-swift-"),
                                              prisms=1, stores=2, say=lambda text: None)
        self.local.nginx, self.local.prism_workers = nginx, workers
        original = cluster_mod.render_config

        def render(node: Any, *args: Any, **kwargs: Any) -> str:
            return original(node, *args, **kwargs).replace(
                "[cluster]\n", "[cluster]\nreplicas = {}\n".format(replicas), 1)

        cluster_mod.render_config = render
        try:
            self.state = self.local.up(timeout=120)
        except BaseException:
            shutil.rmtree(self.local.workdir, ignore_errors=True)
            raise
        finally:
            cluster_mod.render_config = original
        self.prism = self.state["prism_url"]
        status, reply = http_call("POST", self.prism + "/user/login", self.state["user"])
        if status != 200:
            self.stop()
            raise RuntimeError("login failed: {} {!r}".format(status, reply[:200]))
        self.token = decode_json(reply)["session"]["token"]
        self.system = System("StretchFS r{}".format(replicas),
                             lambda: _server_roots(self.local.describe()))

    def upload_one(self, conn: http.client.HTTPConnection, name: str, data: bytes) -> None:
        """One multipart upload through the prism (raises unless 200)."""
        upload("", self.token, data, name, conn=conn)

    def connect(self) -> http.client.HTTPConnection:
        """A new connection to the prism."""
        parts = urlsplit(self.prism)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)

    def stop(self) -> None:
        """Stop the cluster and remove its folder."""
        stop_configuration(self.local)


# -- Swift ---------------------------------------------------------------------------

class SwiftSide:
    """The Swift all-in-one, as the peer of a StretchCluster at `replicas`."""

    def __init__(self, aio: SwiftAIO, replicas: int) -> None:
        self.aio = aio
        self.replicas = replicas

    def upload_one(self, conn: http.client.HTTPConnection, name: str, data: bytes) -> None:
        """One object PUT into the container with `replicas` copies."""
        self.aio.put(conn, "{}/{}".format(self.aio.container_path(self.replicas), name), data)

    def connect(self) -> http.client.HTTPConnection:
        """A new connection to the proxy."""
        return http.client.HTTPConnection("127.0.0.1", self.aio.ports["proxy"], timeout=300)


Side = StretchCluster | SwiftSide


# -- workloads --------------------------------------------------------------------------

def small_uploads(side: Side, count: int, clients: int) -> tuple[float, int]:
    """`count` 4 KiB uploads of fresh random bytes from `clients` threads, one keep-alive
    connection each: (uploads done, 0); raises on the first failed upload."""
    done = [0] * clients
    errors: list[BaseException] = []
    deadline = time.monotonic() + UPLOAD_DEADLINE_SECONDS
    label = "{}-{}".format(os.getpid(), time.monotonic_ns())

    def work(worker: int) -> None:
        conn = side.connect()
        try:
            for index in range(count // clients + (worker < count % clients)):
                if errors or time.monotonic() > deadline:
                    return
                side.upload_one(conn, "s{}-{}-{}.bin".format(label, worker, index),
                                os.urandom(4096))
                done[worker] += 1
        except BaseException as exc:  # noqa: BLE001 - raised after the join
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 30)
    if errors:
        raise RuntimeError("small uploads failed: {!r}".format(errors[0]))
    if sum(done) < count:
        raise RuntimeError("only {} of {} uploads within {:.0f} s".format(
            sum(done), count, UPLOAD_DEADLINE_SECONDS))
    return sum(done), 0


def small_figure(side: Side, system: System, count: int, clients: int) -> Figure:
    """`count` uploads from `clients` threads, measured after an os.sync() (no writeback
    of the system measured before pending)."""
    os.sync()
    return system.measure(lambda: small_uploads(side, count, clients))


def large_figure(side: Side, system: System, size: int) -> Figure:
    """One upload of `size` fresh random bytes, measured after an os.sync()."""
    data = os.urandom(size)
    os.sync()
    return _timed_upload(side, system, "big-{}.bin".format(time.monotonic_ns()), data)


def _timed_upload(side: Side, system: System, name: str, data: bytes) -> Figure:
    """One upload of `data` on a new connection, as a MiB/s Figure."""
    conn = side.connect()

    def one() -> tuple[float, int]:
        side.upload_one(conn, name, data)
        return 1.0, 0

    try:
        return system.measure(one, mib=len(data) / (1 << 20))
    finally:
        conn.close()


def downloads(url: str, args: argparse.Namespace) -> tuple[float, int]:
    """(downloads, errors) of --download-clients client processes for --seconds."""
    per_client = max(1, args.connections // args.download_clients)
    running = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client", url,
                                 str(args.seconds), str(per_client)], stdout=subprocess.PIPE,
                                text=True) for _ in range(args.download_clients)]
    results = []
    try:
        for proc in running:
            results.append(json.loads(proc.communicate(timeout=args.seconds + 60)[0]))
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return sum(r["downloads"] for r in results), sum(r["errors"] for r in results)


def download_figure(system: System, url: str, args: argparse.Namespace) -> Figure:
    """A 1 s warm-up, then the measured downloads of `url`."""
    downloads(url, argparse.Namespace(**dict(vars(args), seconds=1.0)))
    return system.measure(lambda: downloads(url, args))


def wrk_figure(system: System, url: str, args: argparse.Namespace) -> Figure:
    """wrk (1 s warm-up, then --seconds) against one URL, as a Figure."""
    wrk(url, 1, args.connections)
    rate = [0.0]

    def work() -> tuple[float, int]:
        rate[0] = wrk(url, int(args.seconds), args.connections)
        return 0.0, 0

    figure = system.measure(work)
    figure.count = rate[0] * figure.elapsed  # wrk's own count over its own time
    return figure


def signed_location(prism_url: str, target: str) -> str:
    """The store URL a purchase's 302 points at."""
    parts = urlsplit(prism_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", target)
        reply = conn.getresponse()
        reply.read()
    finally:
        conn.close()
    if reply.status != 302:
        raise RuntimeError("the purchase answered {}, not 302".format(reply.status))
    return reply.getheader("Location") or ""


# -- the run ---------------------------------------------------------------------------

Row = tuple[str, Figure | None, Figure | None]


def print_table(rows: list[Row]) -> None:
    """The table: per row Swift, StretchFS, and the ratios StretchFS / Swift."""
    say("")
    say("{:<58} {:<36} {:<36} {:>7} {:>7}".format(
        "workload", "Swift: rate, server CPU/request", "StretchFS: rate, server CPU/request",
        "rate", "CPU"))
    for label, swift, stretch in rows:
        ratios = ("{:.2f}x".format(stretch.rate / swift.rate),
                  "{:.2f}x".format(stretch.cpu_ms / swift.cpu_ms)) \
            if swift and stretch and swift.rate and swift.cpu_ms else ("—", "—")
        say("{:<58} {:<36} {:<36} {:>7} {:>7}".format(
            label, swift.text() if swift else "—", stretch.text() if stretch else "—",
            *ratios))


def start_swift(args: argparse.Namespace) -> SwiftAIO | None:
    """The running Swift all-in-one, or None with the reason printed."""
    reason = ensure_packages(say)
    folder = tempfile.mkdtemp(prefix="swift-aio-")
    reason = reason or xattr_problem(folder)
    if reason:
        say("Swift skipped: " + reason)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    aio = SwiftAIO(folder, workers=args.swift_workers)
    try:
        aio.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return aio


def in_turn(label: str, rounds: list[tuple[Callable[[], Figure] | None,
                                            Callable[[], Figure]]]) -> Row:
    """Run each round's (Swift, StretchFS) measurements, the order swapped every round so
    that load changes on the machine hit both alike; the row of their totals."""
    swift: list[Figure] = []
    stretch: list[Figure] = []
    for index, (on_swift, on_stretch) in enumerate(rounds):
        turns = [(swift, on_swift), (stretch, on_stretch)]
        for into, measure in turns if index % 2 == 0 else reversed(turns):
            if measure is not None:
                into.append(measure())
    row = (label, total(swift) if swift else None, total(stretch))
    say("{}: Swift {}; StretchFS {}".format(label, row[1].text() if row[1] else "—",
                                            row[2].text() if row[2] else "—"))
    return row


def measure_all(args: argparse.Namespace, aio: SwiftAIO | None,
                clusters: dict[int, StretchCluster]) -> list[Row]:
    """Every selected workload on both systems, printing each figure as it comes."""
    swift_system = System("Swift", aio.roots) if aio else None
    systems = [c.system for c in clusters.values()] + ([swift_system] if swift_system else [])
    for system in systems:
        system.measure_idle()
        say("idle: {} {:.1f} ms CPU per second".format(
            system.name, system.idle_per_second * 1000 / TICKS_PER_SECOND))
    rows: list[Row] = []
    only = set(args.only.split(","))
    for replicas in sorted(clusters):
        plural = "replica" if replicas == 1 else "replicas"
        cluster, swift = clusters[replicas], SwiftSide(aio, replicas) if aio else None
        if "small" in only:
            counts = [args.small // args.rounds + (r < args.small % args.rounds)
                      for r in range(args.rounds)]
            rows.append(in_turn(
                "{:,} x 4 KiB uploads, {} clients, {} {}".format(args.small, args.clients,
                                                                 replicas, plural),
                [(partial(small_figure, swift, swift_system, n, args.clients)
                  if swift and swift_system else None,
                  partial(small_figure, cluster, cluster.system, n, args.clients))
                 for n in counts]))
        if "large" in only:
            size = args.large_mib << 20
            rows.append(in_turn(
                "one {} MiB upload, {} {} ({} turn{})".format(
                    args.large_mib, replicas, plural, args.large_rounds,
                    "s" if args.large_rounds > 1 else ""),
                [(partial(large_figure, swift, swift_system, size)
                  if swift and swift_system else None,
                  partial(large_figure, cluster, cluster.system, size))] * args.large_rounds))
    if {"download", "wrk"} & only:
        for index, kib in enumerate(args.download_kib):
            rows += measure_downloads(args, aio, swift_system, clusters[min(clusters)], only,
                                      kib << 10, index == 0)
    return rows


def _size_text(size: int) -> str:
    return "{} MiB".format(size >> 20) if size >= 1 << 20 and not size % (1 << 20) else \
        "{} KiB".format(size >> 10)


def measure_downloads(args: argparse.Namespace, aio: SwiftAIO | None,
                      swift_system: System | None, cluster: StretchCluster,
                      only: set[str], size: int, first: bool) -> list[Row]:
    """For one file size: the purchased download end to end (Python client) and the wrk
    single hops (the prism's 302 only with the `first` size)."""
    rows: list[Row] = []
    text = _size_text(size)
    target = _upload_and_buy(cluster.prism, cluster.state["user"], size)
    tempurl = ""
    if aio:
        path = "{}/download-{}.bin".format(aio.container_path(1), size)
        conn = SwiftSide(aio, 1).connect()
        try:
            aio.put(conn, path, os.urandom(size))
        finally:
            conn.close()
        tempurl = aio.tempurl(path, TEMPURL_SECONDS)
    time.sleep(1.0)  # the purchase reaches the prism's mirror
    if "download" in only:
        rows.append(in_turn(
            "purchased {} download end to end, {} conns (Python)".format(
                text, args.connections),
            [(partial(download_figure, swift_system, tempurl, args) if swift_system else None,
              partial(download_figure, cluster.system, cluster.prism + target, args))]
            * args.rounds))
    if "wrk" in only:
        if shutil.which("wrk") is None:
            say("wrk is not installed: no single-hop rows")
            return rows
        hops: list[tuple[str, System | None, str]] = [
            ("Swift's tempurl {} GET alone (wrk)".format(text), swift_system, tempurl),
            ("StretchFS: the prism's 302 alone (wrk)", cluster.system if first else None,
             cluster.prism + target),
            ("StretchFS: the store's signed {} GET alone (wrk)".format(text), cluster.system,
             signed_location(cluster.prism, target))]
        for label, system, url in hops:
            if system is not None:
                figure = wrk_figure(system, url, args)
                rows.append((label, figure, None) if system is swift_system
                            else (label, None, figure))
                say("{}: {}".format(label, figure.text()))
    return rows


def header(args: argparse.Namespace) -> None:
    """What runs where: date, machine, versions, clients."""
    model = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    revision = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    say("StretchFS ({}) vs OpenStack Swift {}, {} UTC, {} cores ({}), Linux {}".format(
        revision or "?", swift_version(), datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M"), os.cpu_count(), model, platform.release()))
    say("StretchFS: 1 master, 1 prism ({} worker(s)), 2 stores{}, Redis; Swift: proxy, "
        "account, container, 2 object servers (workers = {}), memcached; server CPU = "
        "utime+stime of all of a system's processes (/proc), per request".format(
            args.prism_workers, " behind nginx" if args.nginx else "", args.swift_workers))
    say("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    say("clients: uploads http.client threads in this process; downloads an asyncio client "
        "in {} processes; wrk for single hops{}".format(
            args.download_clients, "" if shutil.which("wrk") else " (not installed)"))


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit("terminated (signal {})".format(signum))


def run(args: argparse.Namespace) -> None:
    """Start both systems, measure, print the table, and stop everything."""
    signal.signal(signal.SIGTERM, _terminated)  # a TERM stops what started, too
    header(args)
    replicas = sorted(set(args.replicas))
    aio: SwiftAIO | None = None
    clusters: dict[int, StretchCluster] = {}
    try:
        aio = start_swift(args)
        for count in replicas:
            clusters[count] = StretchCluster(count, args.nginx, args.prism_workers)
        say("started: {}StretchFS at replicas {}".format("Swift, " if aio else "",
                                                          ", ".join(map(str, replicas))))
        rows = measure_all(args, aio, clusters)
    finally:
        for cluster in clusters.values():
            cluster.stop()
        if aio is not None:
            aio.stop()
            shutil.rmtree(aio.folder, ignore_errors=True)
    print_table(rows)
    say("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    say("ratios: StretchFS / Swift (rate: > 1 is StretchFS faster; CPU: < 1 is StretchFS "
        "cheaper); server CPU per request in ms, its idle part in brackets")


def _positive_ints(text: str) -> list[int]:
    """'4,1024' -> [4, 1024]; an argparse error unless every item is a positive integer."""
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers separated by commas, "
                                         "got {!r}".format(text))
    return values


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run (or be one download client: --client URL SECONDS CONNS)."""
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["--client"]:
        client_main(given[1], float(given[2]), int(given[3]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help="comma-separated subset of " + ",".join(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=2,
                        help="turns of the small-upload and download rows, the systems "
                        "alternating (--small is split over them; --seconds is per turn)")
    parser.add_argument("--small", type=int, default=1000, help="4 KiB uploads per row")
    parser.add_argument("--clients", type=int, default=8, help="upload threads")
    parser.add_argument("--large-mib", type=int, default=64, help="large upload size")
    parser.add_argument("--large-rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="download load per row")
    parser.add_argument("--download-kib", type=_positive_ints, default=[4],
                        help="comma-separated file sizes (KiB) of the download rows")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--download-clients", type=int, default=2, help="client processes")
    parser.add_argument("--replicas", type=_positive_ints, default=[1, 2],
                        help="comma-separated replica counts to measure (1, 2)")
    parser.add_argument("--nginx", action="store_true", help="StretchFS stores behind nginx")
    parser.add_argument("--prism-workers", type=int, default=1)
    parser.add_argument("--swift-workers", default="auto",
                        help="`workers` of every Swift server (Swift's default: auto)")
    args = parser.parse_args(given)
    if set(args.only.split(",")) - set(WORKLOADS) or not set(args.replicas) <= {1, 2} or \
            min(args.small, args.clients, args.large_rounds, args.seconds, args.rounds) < 1:
        parser.error("--only from {}, --replicas from 1,2, positive counts".format(
            ",".join(WORKLOADS)))
    run(args)


if __name__ == "__main__":
    main()
