"""Server CPU per small upload, process by process, with a bare store PUT as baseline.

For each --replicas value, one local cluster (`LocalCluster`: 1 master, 1
prism, 2 stores, private Redis; `[cluster] replicas` set on every node) is
started and measured in the same run:

  store PUT  --uploads bare `PUT /content/put/<sha1>.bin` of --size bytes straight
             to one store (cluster key), from --clients keep-alive connections:
             the store's own part of an upload (commit, journal, publish)
  upload     --uploads multipart `POST /content/upload` of --size bytes through
             the prism from --clients keep-alive connections (session token)

Printed per phase: uploads per second, and server CPU per upload in ms (user
+ system time from /proc/<pid>/stat) of every server process (prism,
stores, master, Redis) and in total, minus what the same processes spend
idle (ping net, feeds; measured for IDLE_SECONDS just before and spread over
the phase), and the ratio to the store PUT baseline.  The phase ends once
the master knows every upload (the stores publish them), so the publish's
CPU is counted.  The client's CPU is not counted.

With --against REV, the same is measured in the same run with the code of git
revision REV (extracted with `git archive` into a temp folder and put first on
the servers' PYTHONPATH), alternating with this tree for --rounds rounds, and
the medians are printed side by side with their ratio.

With --profile DIR, `py-spy record --gil` samples the thread holding the GIL
(Python CPU) of the prism, the stores and the master during the upload
phase (flame-graph input, `--format raw`) into DIR; those runs are slower
and their figures are not comparable.

    .venv/bin/python bench/upload_cpu.py [--uploads 1000] [--clients 8]
        [--size 4096] [--replicas 1 2] [--against REV] [--rounds 1] [--profile DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from stretchfs.devcluster import cluster as cluster_mod  # noqa: E402
from stretchfs.devcluster.process import decode_json, http_call  # noqa: E402

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
IDLE_SECONDS = 3.0
SETTLE_TIMEOUT_SECONDS = 60.0
BOUNDARY = "uploadCpuBoundary7"


# -- server CPU from /proc -----------------------------------------------------------

def cpu_ticks(pid: int) -> int:
    """User + system clock ticks `pid` (all its threads) has used."""
    with open("/proc/{}/stat".format(pid)) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def snapshot(pids: dict[str, int]) -> dict[str, int]:
    """Ticks of every named server process."""
    return {name: cpu_ticks(pid) for name, pid in pids.items()}


def server_pids(state: dict[str, Any]) -> dict[str, int]:
    """name -> pid of the master, the prism, the stores and Redis."""
    pids = {node["name"]: int(node["pid"]) for node in state["nodes"]}
    pids["redis"] = int(state["redis"]["pid"])
    return pids


# -- the client ----------------------------------------------------------------------

def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)


def multipart(data: bytes, name: str) -> bytes:
    """A multipart/form-data body of one file part."""
    head = ('--{}\r\nContent-Disposition: form-data; name="file"; filename="{}"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n').format(BOUNDARY, name).encode()
    return head + data + "\r\n--{}--\r\n".format(BOUNDARY).encode()


def send_upload(conn: http.client.HTTPConnection, token: str, data: bytes, name: str) -> None:
    """One multipart upload through the prism; RuntimeError unless 200."""
    body = multipart(data, name)
    conn.request("POST", "/content/upload", body=body, headers={
        "Content-Type": "multipart/form-data; boundary=" + BOUNDARY,
        "X-STRETCHFS-Token": token})
    reply = conn.getresponse()
    answer = reply.read()
    if reply.status != 200:
        raise RuntimeError("upload: {} {!r}".format(reply.status, answer[:200]))


def send_put(conn: http.client.HTTPConnection, key: str, data: bytes) -> None:
    """One bare PUT to a store; RuntimeError unless 2xx."""
    sha1 = hashlib.sha1(data).hexdigest()
    conn.request("PUT", "/content/put/{}.bin".format(sha1), body=data,
                 headers={"Authorization": "Bearer " + key})
    reply = conn.getresponse()
    answer = reply.read()
    if reply.status not in (200, 201):
        raise RuntimeError("PUT: {} {!r}".format(reply.status, answer[:200]))


def run_clients(url: str, count: int, clients: int, size: int,
                send: Callable[[http.client.HTTPConnection, bytes, str], None]) -> list[str]:
    """`count` sends of fresh random bodies from `clients` threads; the SHA1s sent."""
    per_client = count // clients
    bodies = [[os.urandom(size) for _ in range(per_client)] for _ in range(clients)]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        conn = _connect(url)
        try:
            for index, data in enumerate(bodies[worker]):
                send(conn, data, "u{}-{}.bin".format(worker, index))
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    if errors:
        raise RuntimeError("a client failed: {!r}".format(errors[0]))
    return [hashlib.sha1(data).hexdigest() for batch in bodies for data in batch]


def master_knows(state: dict[str, Any], hashes: list[str], copies: int) -> bool:
    """True once the master's inventory lists `copies` stores for every one of `hashes`."""
    for start in range(0, len(hashes), 1000):
        batch = hashes[start:start + 1000]
        status, reply = http_call("POST", state["master_url"] + "/inventory/lookup",
                                  {"hashes": batch},
                                  headers={"Authorization": "Bearer " + state["cluster_key"]},
                                  timeout=30)
        if status != 200:
            raise RuntimeError("lookup: {} {!r}".format(status, reply[:200]))
        rows = decode_json(reply)
        if any(not rows.get(h) or len(rows[h].get("stores", [])) < copies for h in batch):
            return False
    return True


# -- one cluster ---------------------------------------------------------------------

class Cluster:
    """1 master, 1 prism, 2 stores, private Redis; `replicas` on every node."""

    def __init__(self, replicas: int, code: str) -> None:
        self.workdir = tempfile.mkdtemp(prefix="upload-cpu-")
        original = cluster_mod.render_config
        saved_path = os.environ.get("PYTHONPATH")
        if code:
            os.environ["PYTHONPATH"] = code  # the servers import stretchfs from there

        def render(node: Any, *args: Any, **kwargs: Any) -> str:
            text = original(node, *args, **kwargs)
            return text.replace("[cluster]\n", "[cluster]\nreplicas = {}\n".format(replicas), 1)

        cluster_mod.render_config = render
        try:
            self.local = cluster_mod.LocalCluster(self.workdir, prisms=1, stores=2,
                                                  say=lambda _: None)
            self.state = self.local.up(timeout=90)
        finally:
            cluster_mod.render_config = original
            if saved_path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved_path
        self.prism = self.state["prism_url"]
        self.stores = [n for n in self.state["nodes"] if n["role"] == "store"]
        user = self.state["user"]
        status, reply = http_call("POST", self.prism + "/user/login",
                                  {"username": user["username"], "password": user["password"]},
                                  timeout=30)
        assert status == 200, reply
        self.token = decode_json(reply)["session"]["token"]
        self.pids = server_pids(self.state)

    def down(self) -> None:
        """Stop everything and remove the work folder."""
        self.local.down()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_profilers(cluster: Cluster, folder: str) -> list[subprocess.Popen[bytes]]:
    """py-spy record on the prism and each store (until stopped)."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    procs = []
    for name, pid in cluster.pids.items():
        if name.startswith(("prism", "store", "master")):
            out = os.path.join(folder, "{}.txt".format(name))
            procs.append(subprocess.Popen([spy, "record", "--format", "raw", "--rate", "200",
                                           "--gil", "--nonblocking", "--threads",
                                           "-p", str(pid), "-o", out],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)
    return procs


def stop_profilers(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop our py-spy processes (they write their output on SIGINT)."""
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def measure(cluster: Cluster, phase: Callable[[], list[str]], copies: int) -> dict[str, Any]:
    """Run `phase`; uploads/s and CPU ticks per process (total, idle share)."""
    pids = cluster.pids
    idle_from, idle_start = snapshot(pids), time.monotonic()
    time.sleep(IDLE_SECONDS)
    idle_to = snapshot(pids)
    idle_rate = {n: (idle_to[n] - idle_from[n]) / (time.monotonic() - idle_start) for n in pids}
    before, start = snapshot(pids), time.monotonic()
    hashes = phase()
    sent = time.monotonic()
    deadline = sent + SETTLE_TIMEOUT_SECONDS
    while not master_knows(cluster.state, hashes, copies):
        if time.monotonic() > deadline:
            raise RuntimeError("the master did not learn every upload in time")
        time.sleep(0.05)
    after, end = snapshot(pids), time.monotonic()
    return {"count": len(hashes), "rate": len(hashes) / (sent - start),
            "ticks": {n: after[n] - before[n] for n in pids},
            "idle": {n: idle_rate[n] * (end - start) for n in pids}}


def report(label: str, figures: dict[str, Any], base_ms: float | None) -> float:
    """Print one phase; its net server CPU per upload in ms."""
    per = 1000.0 / TICKS_PER_SECOND / figures["count"]
    parts = []
    total = idle = 0.0
    for name in sorted(figures["ticks"]):
        net = (figures["ticks"][name] - figures["idle"][name]) * per
        total += net
        idle += figures["idle"][name] * per
        parts.append("{} {:.2f}".format(name, net))
    ratio = "" if base_ms is None else ", {:.2f}x the store PUT".format(total / base_ms)
    print("  {:<10} {:7.1f}/s  server CPU {:.2f} ms per upload{} (idle {:.2f} ms "
          "subtracted): {}".format(label, figures["rate"], total, ratio, idle, ", ".join(parts)),
          flush=True)
    return total


def run_replicas(replicas: int, code: str, label: str,
                 args: argparse.Namespace) -> tuple[float, float]:
    """Both phases on one fresh cluster running `code` (this tree when empty);
    (uploads/s, server CPU ms per upload)."""
    cluster = Cluster(replicas, code)
    try:
        key, token = cluster.state["cluster_key"], cluster.token
        store = cluster.stores[0]["url"]
        print("replicas={}, {}: {} x {} B from {} clients".format(
            replicas, label, args.uploads, args.size, args.clients), flush=True)
        # Warm up both paths (connections, imports, first folders).
        run_clients(store, args.clients * 4, args.clients, args.size,
                    lambda c, d, _n: send_put(c, key, d))
        run_clients(cluster.prism, args.clients * 4, args.clients, args.size,
                    lambda c, d, n: send_upload(c, token, d, n))
        base = measure(cluster, lambda: run_clients(
            store, args.uploads, args.clients, args.size,
            lambda c, d, _n: send_put(c, key, d)), 1)
        base_ms = report("store PUT", base, None)
        profilers = start_profilers(cluster, args.profile) if args.profile else []
        try:
            ups = measure(cluster, lambda: run_clients(
                cluster.prism, args.uploads, args.clients, args.size,
                lambda c, d, n: send_upload(c, token, d, n)), replicas)
        finally:
            stop_profilers(profilers)
        return ups["rate"], report("upload", ups, base_ms)
    finally:
        cluster.down()


def extract(revision: str) -> str:
    """A temp folder holding the tree of git `revision`."""
    folder = tempfile.mkdtemp(prefix="upload-cpu-code-")
    archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", revision],
                             capture_output=True, check=True, timeout=120).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True, timeout=120)
    return folder


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--against", default="", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=1, help="alternations with --against")
    parser.add_argument("--profile", default="", help="folder for py-spy output")
    args = parser.parse_args(argv)
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    print("upload_cpu: {} cores, {} ticks/s; git {}".format(
        os.cpu_count(), TICKS_PER_SECOND, json.dumps(_git_head())), flush=True)
    trees = [("this tree", "")]
    if args.against:
        trees.insert(0, (args.against, extract(args.against)))
    try:
        for replicas in args.replicas:
            results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in trees}
            for _round in range(args.rounds):
                for label, code in trees:
                    results[label].append(run_replicas(replicas, code, label, args))
            if len(trees) > 1:
                medians = {label: (statistics.median(r for r, _ in runs),
                                   statistics.median(c for _, c in runs))
                           for label, runs in results.items()}
                (old_label, (old_rate, old_cpu)), (new_label, (new_rate, new_cpu)) = \
                    list(medians.items())
                print("replicas={}: {} {:.1f}/s {:.2f} ms; {} {:.1f}/s {:.2f} ms; CPU per upload "
                      "{:.2f}x, rate {:.2f}x (medians of {} rounds)".format(
                          replicas, old_label, old_rate, old_cpu, new_label, new_rate,
                          new_cpu, new_cpu / old_cpu, new_rate / old_rate, args.rounds),
                      flush=True)
    finally:
        for _label, code in trees:
            if code:
                shutil.rmtree(code, ignore_errors=True)


def _git_head() -> str:
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
