"""Purchased downloads end to end: the client follows the prism's 302 to the store.

Three local clusters (`LocalCluster`: 1 master, 1 prism, 2 stores, private
Redis), all running in the same run and measured in turn, --rounds times
(so a change in the machine's load hits every configuration alike):

  baseline   the stores serve the signed GETs themselves (Python), 1 prism process
  nginx x1   each store fronted by nginx checking the signature (`dev up --nginx`)
  nginx x2   the same with `[http] workers = 2` (`--prism-workers 2`)

In each, one 4 KiB and one 1 MiB file are uploaded and purchased; then
--clients client processes with --connections keep-alive connections in all
GET `/<purchase>/<file>` from the prism, follow the 302 to the store (or its
nginx) and read the whole body, for --seconds per size and round.  Printed: downloads
per second, and server CPU per download (user + system time, from /proc, of
every server process and its children: prism and its workers, stores, nginx
master and workers, master, Redis), each with its ratio to the baseline.
The client's own CPU is not counted (it is printed).  "idle" is the part of
the server CPU the same processes spend without load (ping net, feeds),
measured for IDLE_SECONDS just before, spread over the downloads.  Swift is not set up
here (issue 16, goal 4).

    .venv/bin/python bench/delivery_bench.py [--seconds 5] [--rounds 3]
        [--connections 50] [--clients 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from stretchfs.devcluster.cluster import LocalCluster  # noqa: E402
from stretchfs.devcluster.nginx import nginx_binary  # noqa: E402
from stretchfs.devcluster.process import decode_json, http_call  # noqa: E402

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
IDLE_SECONDS = 3.0
SIZES = (("4 KiB", 4096), ("1 MiB", 1 << 20))


# -- the client (run in its own processes: its CPU is not the servers') ----------

class _Connection:
    """One keep-alive HTTP/1.1 connection (asyncio streams)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> tuple[int, dict[bytes, bytes], int]:
        """(status, headers, body bytes read) of one GET."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write("GET {} HTTP/1.1\r\nHost: {}:{}\r\n\r\n".format(
            target, self.host, self.port).encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        size = 0
        if headers.get(b"transfer-encoding") == b"chunked":
            while True:
                length = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(length + 2)
                size += length
                if length == 0:
                    break
        else:
            length = int(headers.get(b"content-length", b"0"))
            while length - size > 0:
                size += len(await self.reader.read(min(length - size, 1 << 20)))
        if headers.get(b"connection") == b"close":
            self.writer.close()
            self.writer = None
        return status, headers, size


async def fetch_loop(url: str, stop_at: float, counts: dict[str, int]) -> None:
    """GET `url` again and again on one keep-alive connection; a 302 is followed on a
    connection kept per location host."""
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    front = _Connection(parts.hostname or "", parts.port or 80)
    others: dict[str, _Connection] = {}
    while time.monotonic() < stop_at:
        try:
            status, headers, size = await front.get(target)
            if status == 302:
                location = urlsplit(headers[b"location"].decode())
                other = others.get(location.netloc)
                if other is None:
                    other = others[location.netloc] = _Connection(location.hostname or "",
                                                                  location.port or 80)
                status, _, size = await other.get(location.path + "?" + location.query)
            if status == 200:
                counts["downloads"] += 1
                counts["bytes"] += size
            else:
                counts["errors"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError):
            counts["errors"] += 1
            front = _Connection(parts.hostname or "", parts.port or 80)
            others.clear()


def client_main(url: str, seconds: float, connections: int) -> None:
    """Run `connections` fetch loops for `seconds`; print the counts and this process's
    CPU seconds as JSON."""
    counts = {"downloads": 0, "errors": 0, "bytes": 0}

    async def run() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(fetch_loop(url, stop_at, counts) for _ in range(connections)))

    asyncio.run(run())
    times = os.times()
    counts["cpu"] = times.user + times.system  # type: ignore[assignment]
    print(json.dumps(counts), flush=True)


# -- server CPU from /proc ---------------------------------------------------------

def _parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/{}/stat".format(entry)) as handle:
                    found[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    return found


def _with_descendants(roots: list[int]) -> list[int]:
    parents = _parents()
    found = set(roots)
    grew = True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in found} - found
        found |= new
        grew = bool(new)
    return sorted(found)


def _cpu_ticks(pids: list[int]) -> int:
    """utime + stime of `pids` (those still running), in clock ticks."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/{}/stat".format(pid)) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _server_roots(state: dict[str, Any]) -> list[int]:
    pids = [int(node["pid"]) for node in state["nodes"]]
    pids += [int(front["pid"]) for front in state.get("nginx") or []]
    if state["redis"].get("pid"):
        pids.append(int(state["redis"]["pid"]))
    return pids


# -- one configuration --------------------------------------------------------------

def _upload_and_buy(prism: str, user: dict[str, str], size: int) -> str:
    """Upload `size` random bytes and purchase them; the prism path of the download."""
    status, reply = http_call("POST", prism + "/user/login", user)
    token = decode_json(reply)["session"]["token"]
    boundary = "benchBoundary16"
    body = ('--{}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n').format(boundary).encode()
    body += os.urandom(size) + "\r\n--{}--\r\n".format(boundary).encode()
    status, reply = http_call("POST", prism + "/content/upload", data=body, timeout=60,
                              headers={"X-STRETCHFS-Token": token,
                                       "Content-Type": "multipart/form-data; boundary=" +
                                       boundary})
    if status != 200:
        raise RuntimeError("upload failed: {} {!r}".format(status, reply[:200]))
    sha1 = decode_json(reply)["files"]["file"]["hash"]
    status, reply = http_call("POST", prism + "/content/purchase",
                              {"hash": sha1, "ext": "bin", "referrer": []},
                              headers={"X-STRETCHFS-Token": token})
    if status != 200:
        raise RuntimeError("purchase failed: {} {!r}".format(status, reply[:200]))
    return "/{}/f.bin".format(decode_json(reply)["token"])


def _measure(state: dict[str, Any], target: str, args: argparse.Namespace) -> dict[str, float]:
    """One measurement: idle CPU for IDLE_SECONDS, a 1 s warm-up, then --seconds of load."""
    prism = state["prism_url"]
    per_client = max(1, args.connections // args.clients)

    def clients(seconds: float) -> list[subprocess.Popen[str]]:
        return [subprocess.Popen([sys.executable, __file__, "--client", prism + target,
                                  str(seconds), str(per_client)], stdout=subprocess.PIPE,
                                 text=True) for _ in range(args.clients)]

    pids = _with_descendants(_server_roots(state))
    idle_start, idle_ticks = time.monotonic(), _cpu_ticks(pids)
    time.sleep(IDLE_SECONDS)
    idle_rate = (_cpu_ticks(pids) - idle_ticks) / (time.monotonic() - idle_start)
    for proc in clients(1.0):  # warm up: connections, open-file caches
        proc.communicate(timeout=60)
    running = clients(args.seconds)
    start, ticks = time.monotonic(), _cpu_ticks(pids)
    results = [json.loads(proc.communicate(timeout=args.seconds + 60)[0]) for proc in running]
    elapsed, ticks = time.monotonic() - start, _cpu_ticks(pids) - ticks
    return {"downloads": sum(r["downloads"] for r in results), "elapsed": elapsed,
            "errors": sum(r["errors"] for r in results), "ticks": ticks,
            "idle_ticks": idle_rate * elapsed, "client_cpu": sum(r["cpu"] for r in results)}


def start_configuration(nginx: bool, workers: int) -> tuple[LocalCluster, dict[str, str]]:
    """A running cluster with the sizes uploaded and purchased: (cluster, size -> path)."""
    os.environ["PYTHONPATH"] = REPO
    cluster = LocalCluster(tempfile.mkdtemp(prefix="sfs-delivery-bench-"), prisms=1, stores=2,
                           say=lambda text: None)
    cluster.nginx, cluster.prism_workers = nginx, workers
    try:
        state = cluster.up(timeout=120)
        targets = {label: _upload_and_buy(state["prism_url"], state["user"], size)
                   for label, size in SIZES}
    except BaseException:
        stop_configuration(cluster)
        raise
    return cluster, targets


def stop_configuration(cluster: LocalCluster) -> None:
    """Stop the cluster's processes and remove its folder."""
    cluster.down()
    shutil.rmtree(cluster.workdir, ignore_errors=True)


def _totals(runs: list[dict[str, float]]) -> dict[str, float]:
    total = {key: sum(run[key] for run in runs) for key in runs[0]}
    downloads = max(total["downloads"], 1)
    per_ms = 1000.0 / TICKS_PER_SECOND / downloads
    return {"rate": total["downloads"] / total["elapsed"], "errors": total["errors"],
            "cpu_ms": total["ticks"] * per_ms, "idle_ms": total["idle_ticks"] * per_ms,
            "client_cpu_ms": 1000.0 * total["client_cpu"] / downloads}


def main(argv: list[str] | None = None) -> None:
    """Measure the three configurations, interleaved over --rounds, and print the table."""
    if (argv or sys.argv[1:])[:1] == ["--client"]:
        url, seconds, connections = (argv or sys.argv[1:])[1:4]
        client_main(url, float(seconds), int(connections))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, each measuring every configuration and size once")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    args = parser.parse_args(argv)
    configurations = [("stores without nginx (baseline)", False, 1)]
    if nginx_binary() is None:
        print("nginx is not installed: only the baseline is measured", flush=True)
    else:
        configurations += [("stores behind nginx, 1 prism worker", True, 1),
                           ("stores behind nginx, 2 prism workers", True, 2)]
    print("purchased downloads end to end (client follows the 302), {} connections in {} "
          "client processes, {} rounds of {} s per configuration and size, {} cores; Swift "
          "as the peer is not set up in this bench (issue 16, goal 4), so no Swift "
          "ratio".format(args.connections, args.clients, args.rounds, args.seconds,
                         os.cpu_count()), flush=True)
    started: list[tuple[str, LocalCluster, dict[str, str]]] = []
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for label, nginx, workers in configurations:
            started.append((label, *start_configuration(nginx, workers)))
        time.sleep(1.0)  # the purchases reach every worker's mirror
        for number in range(args.rounds):
            for label, cluster, targets in started:
                state = cluster.describe()
                for size, _ in SIZES:
                    runs.setdefault((label, size), []).append(
                        _measure(state, targets[size], args))
            print("round {} of {} done".format(number + 1, args.rounds), flush=True)
    finally:
        for _, cluster, _ in started:
            stop_configuration(cluster)
    print()
    print("{:<38} {:>6} {:>9} {:>7} {:>14} {:>7} {:>10} {:>7} {:>13}".format(
        "configuration", "size", "downl./s", "ratio", "server CPU/dl", "ratio", "of it idle",
        "errors", "client CPU/dl"))
    for label, _, _ in started:
        for size, _ in SIZES:
            figures, base = _totals(runs[label, size]), _totals(runs[started[0][0], size])
            print("{:<38} {:>6} {:>9.0f} {:>6.2f}x {:>11.3f} ms {:>6.2f}x {:>7.3f} ms {:>7d} "
                  "{:>10.3f} ms".format(
                      label, size, figures["rate"], figures["rate"] / base["rate"],
                      figures["cpu_ms"], figures["cpu_ms"] / base["cpu_ms"],
                      figures["idle_ms"], int(figures["errors"]), figures["client_cpu_ms"]))


if __name__ == "__main__":
    main()
