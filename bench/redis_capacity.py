"""How far one Redis primary carries the cluster: write rates and memory per row.

Starts a private redis-server and a real master on it, publishes `--rows`
inventory rows (each held by one store) and creates `--purchases` purchases
over HTTP, and prints for each the rate and the growth of Redis's
`used_memory` per million rows (extrapolated linearly from the sample, which
holds: every row is a few hash fields and a feed entry of fixed size).
docs/ha.md ("Production notes") quotes its figures.

    .venv/bin/python bench/redis_capacity.py [--rows 200000] [--purchases 20000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.master_feed import start_master  # noqa: E402
from bench.replica_acks import publish_bodies, purchase_bodies, run_posts  # noqa: E402
from stretchfs.devcluster.redis_server import RedisProcess  # noqa: E402


def used_memory(port: int) -> int:
    """Redis's used_memory in bytes (redis-cli INFO memory)."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "memory"], capture_output=True,
                         text=True, timeout=30).stdout
    for line in out.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError("no used_memory in INFO memory: " + out[:200])


def main() -> int:
    """Run the measurement; prints one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--purchases", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=2)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="stretchfs-bench-capacity-")
    redis = RedisProcess(os.path.join(workdir, "redis"), appendonly=False)
    master = None
    try:
        redis.start()
        master, port = start_master(workdir, redis.url)
        for kind, path, bodies, count in (
                ("inventory rows", "/inventory/publish",
                 publish_bodies(args.rows, args.batch, "capacity"), args.rows),
                ("purchases", "/purchases", purchase_bodies(args.purchases), args.purchases)):
            before = used_memory(redis.port)
            seconds = run_posts(port, path, bodies, args.connections)
            grown = used_memory(redis.port) - before
            print("{:<15} {:>8} in {:6.2f} s = {:>8,.0f} /s; Redis memory +{:.1f} MB = "
                  "{:,.0f} MB per million ({:.0f} bytes each)".format(
                      kind, count, seconds, count / seconds, grown / 2**20,
                      grown / count * 1e6 / 2**20, grown / count))
        return 0
    finally:
        if master is not None:
            master.stop()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
