"""Purchased downloads end to end: the client follows the prism's 302 to the store.

Three local clusters (`LocalCluster`: 1 master, 1 prism, 2 stores, private
Redis), one after the other in the same run:

  baseline   the stores serve the signed GETs themselves (Python), 1 prism process
  nginx x1   each store fronted by nginx checking the signature (`dev up --nginx`)
  nginx x2   the same with `[http] workers = 2` (`--prism-workers 2`)

In each, one 4 KiB and one 1 MiB file are uploaded and purchased; then
--clients client processes with --connections keep-alive connections in all
GET `/<purchase>/<file>` from the prism, follow the 302 to the store (or its
nginx) and read the whole body, for --seconds per size.  Printed: downloads
per second, and server CPU per download (user + system time, from /proc, of
every server process and its children: prism and its workers, stores, nginx
master and workers, master, Redis), each with its ratio to the baseline.
The client's own CPU is not counted (it is printed).  "idle" is the part of
the server CPU the same processes spend without load (ping net, feeds),
measured for IDLE_SECONDS just before, spread over the downloads.  Swift is not set up
here (issue 16, goal 4).

    .venv/bin/python bench/delivery_bench.py [--seconds 10] [--connections 50]
        [--clients 2]
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


async def _download_loop(prism: str, target: str, stop_at: float, counts: dict[str, int]) -> None:
    parts = urlsplit(prism)
    front = _Connection(parts.hostname or "", parts.port or 80)
    stores: dict[str, _Connection] = {}
    while time.monotonic() < stop_at:
        try:
            status, headers, _ = await front.get(target)
            if status != 302:
                counts["errors"] += 1
                continue
            location = urlsplit(headers[b"location"].decode())
            store = stores.get(location.netloc)
            if store is None:
                store = stores[location.netloc] = _Connection(location.hostname or "",
                                                              location.port or 80)
            status, _, size = await store.get(location.path + "?" + location.query)
            if status == 200:
                counts["downloads"] += 1
                counts["bytes"] += size
            else:
                counts["errors"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts["errors"] += 1
            front = _Connection(parts.hostname or "", parts.port or 80)
            stores.clear()


def client_main(prism: str, target: str, seconds: float, connections: int) -> None:
    """Run `connections` download loops for `seconds`; print the counts as JSON."""
    counts = {"downloads": 0, "errors": 0, "bytes": 0}

    async def run() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(_download_loop(prism, target, stop_at, counts)
                               for _ in range(connections)))

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
    prism = state["prism_url"]
    per_client = max(1, args.connections // args.clients)

    def clients(seconds: float) -> list[subprocess.Popen[str]]:
        return [subprocess.Popen([sys.executable, __file__, "--client", prism, target,
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
    downloads = sum(r["downloads"] for r in results)
    return {"rate": downloads / elapsed, "errors": sum(r["errors"] for r in results),
            "cpu_ms": 1000.0 * ticks / TICKS_PER_SECOND / max(downloads, 1),
            "idle_ms": 1000.0 * idle_rate * elapsed / TICKS_PER_SECOND / max(downloads, 1),
            "client_cpu_ms": 1000.0 * sum(r["cpu"] for r in results) / max(downloads, 1),
            "processes": len(pids)}


def run_configuration(nginx: bool, workers: int, args: argparse.Namespace
                      ) -> dict[str, dict[str, float]]:
    """Start a cluster, measure each size, stop it."""
    workdir = tempfile.mkdtemp(prefix="sfs-delivery-bench-")
    os.environ["PYTHONPATH"] = REPO
    cluster = LocalCluster(workdir, prisms=1, stores=2, say=lambda text: None)
    cluster.nginx, cluster.prism_workers = nginx, workers
    try:
        state = cluster.up(timeout=120)
        targets = {label: _upload_and_buy(state["prism_url"], state["user"], size)
                   for label, size in SIZES}
        time.sleep(1.0)  # the purchases reach every worker's mirror
        return {label: _measure(state, targets[label], args) for label, _ in SIZES}
    finally:
        cluster.down()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Measure the three configurations and print the table."""
    if (argv or sys.argv[1:])[:1] == ["--client"]:
        prism, target, seconds, connections = (argv or sys.argv[1:])[1:5]
        client_main(prism, target, float(seconds), int(connections))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
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
          "client processes, {} s per size, {} cores; Swift as the peer is not set up in "
          "this bench (issue 16, goal 4), so no Swift ratio".format(
              args.connections, args.clients, args.seconds, os.cpu_count()), flush=True)
    results = []
    for label, nginx, workers in configurations:
        results.append((label, run_configuration(nginx, workers, args)))
        print("measured: {}".format(label), flush=True)
    print()
    print("{:<38} {:>6} {:>10} {:>7} {:>14} {:>7} {:>9} {:>7} {:>13}".format(
        "configuration", "size", "downl./s", "ratio", "server CPU/dl", "ratio", "of it idle",
        "errors", "client CPU/dl"))
    base = results[0][1]
    for label, by_size in results:
        for size, figures in by_size.items():
            print("{:<38} {:>6} {:>10.0f} {:>6.2f}x {:>11.3f} ms {:>6.2f}x {:>6.3f} ms {:>7d} "
                  "{:>10.3f} ms".format(
                      label, size, figures["rate"], figures["rate"] / base[size]["rate"],
                      figures["cpu_ms"], figures["cpu_ms"] / base[size]["cpu_ms"],
                      figures["idle_ms"], int(figures["errors"]), figures["client_cpu_ms"]))


if __name__ == "__main__":
    main()
