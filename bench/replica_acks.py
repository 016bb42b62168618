"""Benchmark of acknowledged-after-replication writes, and of a Redis failover.

Starts a Redis primary with two replicas and three Sentinels (as `stretchfs
dev up --ha` does) and two real masters behind the Sentinels, one with
`[redis] min_replica_acks = 0` and one with 1.  Measures, in the same run and
alternating between the two masters, purchase creation (`--purchases` per
round over `--connections` keep-alive connections) and inventory publish
(`--rows` per round in batches of `--batch`): rates, their ratio (target
>= 0.5x) and the master's CPU per operation from /proc.  Then SIGKILLs the
primary while purchases keep going to the min_replica_acks = 1 master and
reports the failover time: kill -> first purchase acknowledged again.

    .venv/bin/python bench/replica_acks.py [--rounds 3] [--purchases 2000] [--rows 50000]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from stretchfs.devcluster.process import NodeProcess  # noqa: E402
from stretchfs.devcluster.redis_server import new_passwords  # noqa: E402
from stretchfs.devcluster.redisacl import MASTER_USER  # noqa: E402
from stretchfs.devcluster.sentinel import SERVICE, RedisHA, primary_port  # noqa: E402

KEY = "bench-cluster-key-0123456789abcdef"
HEADERS = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` in seconds (from /proc)."""
    with open("/proc/{}/stat".format(pid), encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_posts(port: int, path: str, bodies: list[bytes], connections: int,
              retried: list[int] | None = None) -> float:
    """POST every body over `connections` keep-alive connections, retrying a 503 as a
    client does (counted in `retried[0]`); returns seconds."""
    lock = threading.Lock()
    queue = list(reversed(bodies))
    errors: list[str] = []
    retries = retried if retried is not None else [0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue or errors:
                    break
                body = queue.pop()
            for _ in range(100):
                conn.request("POST", path, body=body, headers=HEADERS)
                reply = conn.getresponse()
                data = reply.read()
                if reply.status != 503:
                    break
                with lock:
                    retries[0] += 1
                time.sleep(0.1)
            if reply.status not in (200, 201):
                errors.append("{} {}".format(reply.status, data[:200]))
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    if errors:
        raise RuntimeError("{} failed: {}".format(path, errors[0]))
    return time.perf_counter() - started


def purchase_bodies(count: int) -> list[bytes]:
    """Purchase requests for `count` contents."""
    return [json.dumps({"hash": hashlib.sha1(str(i).encode()).hexdigest(), "ext": "mp4",
                        "life": 3600, "owner": "bench"}).encode() for i in range(count)]


def publish_bodies(rows: int, batch: int, salt: str) -> list[bytes]:
    """Inventory publish requests adding `rows` new contents (new for each `salt`)."""
    bodies = []
    for start in range(0, rows, batch):
        changes = [{"op": "add", "hash": hashlib.sha1((salt + str(i)).encode()).hexdigest(),
                    "ext": "mp4", "size": i} for i in range(start, min(rows, start + batch))]
        bodies.append(json.dumps({"store": "store1", "changes": changes}).encode())
    return bodies


def start_master(workdir: str, name: str, ha: RedisHA, acks: int) -> tuple[NodeProcess, int]:
    """A master behind the Sentinels with `min_replica_acks = acks`; (process, port)."""
    config = os.path.join(workdir, name + ".toml")
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(
            "[node]\nname = \"{}\"\n[http]\nlisten = \"tcp:0:interface=127.0.0.1\"\n"
            "[cluster]\nkey = \"{}\"\n[redis]\nurl = \"redis://{}@127.0.0.1:1/0\"\n"
            "password = \"{}\"\nsentinels = \"{}\"\nservice = \"{}\"\nmin_replica_acks = {}\n"
            .format(name, KEY, MASTER_USER, ha.passwords[MASTER_USER],
                    ", ".join(ha.sentinel_addresses), SERVICE, acks))
    master = NodeProcess("master", name, config, os.path.join(workdir, name + ".log"),
                         env={"PYTHONPATH": REPO})
    master.start()
    port = master.wait_listening(30)
    master.wait_healthy("http://127.0.0.1:{}".format(port), 30)
    return master, port


def failover_seconds(port: int, primary_pid: int, limit: float = 30.0) -> float | None:
    """SIGKILL the primary while purchasing through `port`; seconds to the first purchase
    acknowledged by a call started after the kill (None past `limit`)."""
    body = purchase_bodies(1)[0]
    os.kill(primary_pid, signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < limit:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            conn.request("POST", "/purchases", body=body, headers=HEADERS)
            if conn.getresponse().status == 201:
                return started - killed + (time.monotonic() - started)
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    return None


def main() -> int:
    """Run the benchmark; prints one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--purchases", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--down-after-ms", type=int, default=5000,
                        help="Sentinel down-after-milliseconds (the dev cluster's 1000 lets a "
                             "CPU-starved primary be failed over mid-run)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="stretchfs-bench-acks-")
    ha = RedisHA(os.path.join(workdir, "redis"), new_passwords(ha=True), "bench-admin",
                 down_after_ms=args.down_after_ms)
    masters: dict[int, tuple[NodeProcess, int]] = {}
    try:
        ha.start()
        for acks in (0, 1):
            masters[acks] = start_master(workdir, "master{}".format(acks), ha, acks)
        print("primary + {} replicas + {} Sentinels (down-after {} ms); masters: acks=0 port "
              "{}, acks=1 port {}; {} rounds of {} purchases and {} inventory rows (batch {}), "
              "{} connections".format(len(ha.servers) - 1, len(ha.sentinels),
                                      args.down_after_ms, masters[0][1], masters[1][1],
                                      args.rounds, args.purchases, args.rows, args.batch,
                                      args.connections))
        totals = {(kind, acks): [0.0, 0.0, 0] for kind in ("purchase", "publish")
                  for acks in (0, 1)}
        retried = {acks: [0] for acks in (0, 1)}
        for round_number in range(args.rounds):
            for acks in (0, 1):
                process, port = masters[acks]
                for kind, path, bodies, count in (
                        ("purchase", "/purchases", purchase_bodies(args.purchases),
                         args.purchases),
                        ("publish", "/inventory/publish",
                         publish_bodies(args.rows, args.batch,
                                        "{}-{}".format(round_number, acks)), args.rows)):
                    cpu = cpu_seconds(process.pid)
                    seconds = run_posts(port, path, bodies, args.connections, retried[acks])
                    total = totals[(kind, acks)]
                    total[0] += seconds
                    total[1] += cpu_seconds(process.pid) - cpu
                    total[2] += count
        ok = True
        for kind, unit in (("purchase", "purchases"), ("publish", "rows")):
            rates = {}
            for acks in (0, 1):
                seconds, cpu, count = totals[(kind, acks)]
                rates[acks] = count / seconds
                print("{:<8} min_replica_acks={}: {:>8} {} in {:6.2f} s = {:>9,.0f} /s, master "
                      "CPU {:.1f} us each".format(kind, acks, count, unit, seconds, rates[acks],
                                                  cpu / count * 1e6))
            ratio = rates[1] / rates[0]
            ok = ok and ratio >= 0.5
            print("{:<8} ratio acks=1 / acks=0: {:.2f} x  (target >= 0.5)".format(kind, ratio))
        print("503s retried (a Sentinel failover during the run, a replica too slow for "
              "WAIT): acks=0 {}, acks=1 {}".format(retried[0][0], retried[1][0]))
        port = primary_port(ha.sentinel_addresses)
        primary = next(s.process for s in ha.servers if s.port == port)
        assert primary is not None
        took = failover_seconds(masters[1][1], primary.pid)
        print("failover: first purchase acknowledged {} after SIGKILL of the primary".format(
            "{:.2f} s".format(took) if took is not None else "NEVER (30 s)"))
        ok = ok and took is not None and took <= 10.0
        print("result  : {}".format("all targets met" if ok else "TARGET MISSED"))
        return 0 if ok else 1
    finally:
        for process, _ in masters.values():
            process.stop()
        ha.stop()


if __name__ == "__main__":
    sys.exit(main())
