"""Benchmark of the master's inventory database: publish, then snapshot.

Starts a private redis-server on a free port and a real master (`twistd
stretchfs-master`), publishes `--rows` inventory rows in batches of
`--batch` over HTTP (`--connections` keep-alive connections in parallel),
then streams the full snapshot.  Prints rows/s for both, the master's peak
RSS (over the whole run and while streaming), and, as the ceiling measured
in the same run on the same Redis, `redis-benchmark -P 50 -t set`.

Targets (issue 3): publish >= 50,000 rows/s; snapshot >= 200,000 rows/s;
master RSS < 200 MB while streaming.

    .venv/bin/python bench/master_feed.py [--rows 1000000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from stretchfs.devcluster.process import NodeProcess  # noqa: E402
from stretchfs.devcluster.redis_server import RedisProcess  # noqa: E402

KEY = "bench-cluster-key-0123456789abcdef"
STORES = ("store1", "store2", "store3")


def rss_kb(pid: int, field: str) -> int:
    """VmRSS or VmHWM of `pid` in kB (0 when unreadable)."""
    try:
        with open("/proc/{}/status".format(pid), encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def batches(rows: int, size: int) -> list[bytes]:
    """Encoded publish bodies: each content id held by one of three stores."""
    bodies = []
    for start in range(0, rows, size):
        store = STORES[(start // size) % len(STORES)]
        changes = [{"op": "add", "hash": hashlib.sha1(str(i).encode()).hexdigest(),
                    "ext": "mp4", "size": i} for i in range(start, min(rows, start + size))]
        bodies.append(json.dumps({"store": store, "changes": changes}).encode())
    return bodies


def publish(port: int, bodies: list[bytes], connections: int) -> tuple[float, int]:
    """POST every body; returns (seconds, rows applied)."""
    lock = threading.Lock()
    queue = list(reversed(bodies))
    applied = [0]
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
        while True:
            with lock:
                if not queue or errors:
                    break
                body = queue.pop()
            conn.request("POST", "/inventory/publish", body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            if reply.status != 200:
                errors.append("{} {}".format(reply.status, data[:200]))
                break
            with lock:
                applied[0] += json.loads(data)["applied"]
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError("publish failed: " + errors[0])
    return elapsed, applied[0]


def snapshot(port: int, pid: int) -> tuple[float, int, int]:
    """Stream the full snapshot; returns (seconds, rows, peak RSS kB while streaming)."""
    peak = [rss_kb(pid, "VmRSS")]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_kb(pid, "VmRSS"))

    sampler = threading.Thread(target=sample)
    sampler.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    try:
        conn.request("GET", "/inventory/snapshot", headers={"Authorization": "Bearer " + KEY})
        reply = conn.getresponse()
        if reply.status != 200:
            raise RuntimeError("snapshot answered {}".format(reply.status))
        lines = 0
        while True:
            chunk = reply.read1(1 << 20)
            if not chunk:
                break
            lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
    finally:
        done.set()
        sampler.join(5)
        conn.close()
    return elapsed, lines - 1, peak[0]  # first line is the cursor


def redis_ceiling(port: int, requests: int) -> float:
    """SET requests/s of `redis-benchmark -P 50 -t set` on the same Redis."""
    result = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-P", "50", "-t", "set",
         "-n", str(requests), "-q"], capture_output=True, text=True, timeout=300)
    match = re.search(r"SET: ([\d.]+) requests per second", result.stdout.replace("\r", "\n"))
    if not match:
        raise RuntimeError("redis-benchmark said: " + result.stdout[-300:] + result.stderr)
    return float(match.group(1))


def start_master(workdir: str, redis_url: str, extra: str = "") -> tuple[NodeProcess, int]:
    """A master on 127.0.0.1 over the Redis at `redis_url` (config in `workdir`, `extra`
    TOML appended), started and healthy, and its HTTP port (stopped again if it fails
    to get there)."""
    config = os.path.join(workdir, "master.toml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write("[node]\nname = \"master\"\n"
                     "[http]\nlisten = \"tcp:0:interface=127.0.0.1\"\n"
                     "[cluster]\nkey = \"{}\"\n[redis]\nurl = \"{}\"\n".format(KEY, redis_url)
                     + extra)
    master = NodeProcess("master", "master", config, os.path.join(workdir, "master.log"),
                         env={"PYTHONPATH": REPO})
    master.start()
    try:
        port = master.wait_listening(30)
        master.wait_healthy("http://127.0.0.1:{}".format(port), 30)
    except BaseException:
        master.stop()
        raise
    return master, port


def main() -> int:
    """Run the benchmark; prints one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--redis-requests", type=int, default=1_000_000)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="stretchfs-bench-master-")
    redis = RedisProcess(os.path.join(workdir, "redis"), appendonly=False)
    master = None
    try:
        redis.start()
        master, port = start_master(workdir, redis.url, "[master]\nfeed_max_len = {}\n".format(
            max(args.rows, 1000)))
        print("master pid {} on port {}, redis on port {}, rows {}, batch {}, connections {}"
              .format(master.pid, port, redis.port, args.rows, args.batch, args.connections))
        bodies = batches(args.rows, args.batch)
        rss_start = rss_kb(master.pid, "VmRSS")
        seconds, applied = publish(port, bodies, args.connections)
        del bodies
        publish_rate = applied / seconds
        print("publish : {:>9} rows in {:6.2f} s = {:>9,.0f} rows/s  (target >= 50,000)".format(
            applied, seconds, publish_rate))
        replay_s, replay_applied = publish(port, batches(min(args.rows, 100_000), args.batch),
                                           args.connections)
        print("replay  : {:>9} rows in {:6.2f} s, {} applied (idempotent: expected 0)".format(
            min(args.rows, 100_000), replay_s, replay_applied))
        seconds, rows, stream_peak = snapshot(port, master.pid)
        snapshot_rate = rows / seconds
        print("snapshot: {:>9} rows in {:6.2f} s = {:>9,.0f} rows/s  (target >= 200,000)".format(
            rows, seconds, snapshot_rate))
        hwm = rss_kb(master.pid, "VmHWM")
        print("master RSS: start {:.0f} MB, peak while streaming {:.0f} MB, peak of the run "
              "{:.0f} MB  (target < 200 MB)".format(rss_start / 1024, stream_peak / 1024,
                                                    hwm / 1024))
        ceiling = redis_ceiling(redis.port, args.redis_requests)
        print("ceiling : redis-benchmark -P 50 -t set = {:,.0f} SET/s on the same Redis".format(
            ceiling))
        print("ratios  : publish {:.3f} x ceiling, snapshot {:.3f} x ceiling".format(
            publish_rate / ceiling, snapshot_rate / ceiling))
        ok = (publish_rate >= 50_000 and snapshot_rate >= 200_000 and stream_peak < 200 * 1024
              and rows == args.rows and replay_applied == 0)
        print("result  : {}".format("all targets met" if ok else "TARGET MISSED"))
        return 0 if ok else 1
    finally:
        if master is not None:
            master.stop()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
