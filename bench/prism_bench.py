"""Prism benchmarks, each printed with a baseline measured in the same run.

(a) delivery: `GET /<token>/<file>` -> 302 through a real prism (twistd
    stretchfs-prism in a local cluster) vs a bare Klein route answering a
    constant 302 in the same kind of process; wrk, 50 connections; and the
    same prism's HTTPS listener beside its plain one (target >= 0.7x).
(b) mirrors: RSS growth per entry of a prism that loads N inventory rows and
    N purchases at start-up from a stand-in master (NDJSON snapshots), vs the
    same prism loading empty snapshots; and the time until /health is 200.
(c) a 256 MiB upload through the prism at replicas=2 vs one direct PUT of a
    file of the same size to one store.
(d) feed propagation: a change published to the master (as a store does)
    until it is in the mirrors of two prisms (`POST /mirror/inventory`),
    p50/p99 over --changes changes; (d') the same from a PUT to a store (the
    store publishes it itself).
(e) small uploads: --small files of 4 KiB from 8 parallel clients,
    uploads/s at replicas=1 and replicas=2.

Every process is started here on loopback and stopped by its own PID. (a) needs
`wrk` (`apt-get install wrk`).

    .venv/bin/python bench/prism_bench.py [--seconds 5] [--entries 1000000]
        [--changes 200] [--small 1000] [--only abcde]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any
from urllib.parse import urlsplit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from stretchfs.devcluster import cluster as cluster_mod  # noqa: E402
from stretchfs.devcluster.ports import free_port  # noqa: E402
from stretchfs.devcluster.process import (  # noqa: E402
    NodeProcess,
    decode_json,
    http_call,
    http_get_json,
)

KEY = "bench-cluster-key-0123456789abcdef"
ENV = dict(os.environ, PYTHONPATH=REPO)

KLEIN_302 = """
import sys
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor
from klein import Klein
from stretchfs.roles import QuietSite

app = Klein()

@app.route("/<token>/<name>")
def deliver(request, token, name):
    request.setResponseCode(302)
    request.setHeader(b"Location", b"http://127.0.0.1:1/content/ab/cd/x.mp4?md5=x&expires=1")
    return b""

site = QuietSite(app.resource())
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
print("listening", flush=True)
reactor.run()
"""

STANDIN_MASTER = r'''
import json, sys, time
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

N_INV, N_PUR = int(sys.argv[2]), int(sys.argv[3])
NOW = time.time()
STORES = [["store1", "store2"], ["store2", "store3"], ["store1", "store3"]]


def inventory_rows():
    yield json.dumps({"cursor": "0"}) + "\n"
    for i in range(N_INV):
        yield '{"hash":"%040x","ext":"mp4","size":%d,"stores":%s}\n' % (
            i, 1000 + i, json.dumps(STORES[i % 3]))


def purchase_rows():
    yield json.dumps({"cursor": "0"}) + "\n"
    for i in range(N_PUR):
        yield ('{"token":"%064x","hash":"%040x","ext":"mp4","life":86400,'
               '"expires":%d,"referrer":[],"ip":"","owner":"bench","created":%d}\n') % (
            i, i, NOW + 86400, NOW)


class Root(Resource):
    isLeaf = True

    def render(self, request):
        path = request.path
        request.setHeader(b"Content-Type", b"application/json")
        if path == b"/peers/register":
            return b"{}"
        if path == b"/peers":
            return b'{"peers": []}'
        if path in (b"/inventory/snapshot", b"/purchases/snapshot"):
            rows = inventory_rows() if path.startswith(b"/inv") else purchase_rows()

            def batches():
                buf = []
                for row in rows:
                    buf.append(row)
                    if len(buf) >= 5000:
                        request.write("".join(buf).encode())
                        buf = []
                        yield None
                if buf:
                    request.write("".join(buf).encode())
            task.cooperate(batches()).whenDone().addCallback(lambda _: request.finish())
            return NOT_DONE_YET
        if path.endswith(b"/feed"):
            wait = float(request.args.get(b"wait", [b"1"])[0])
            reactor.callLater(wait, lambda: (request.write(
                b'{"cursor": "0", "changes": []}'), request.finish()))
            return NOT_DONE_YET
        request.setResponseCode(404)
        return b'{"error": "not found"}'


reactor.listenTCP(int(sys.argv[1]), Site(Root()), interface="127.0.0.1")
print("listening", flush=True)
reactor.run()
'''


def say(text: str) -> None:
    """Print a line at once."""
    print(text, flush=True)


def call(url: str, body: Any = None, token: str = "", headers: dict[str, str] | None = None,
         data: bytes | None = None, method: str = "POST") -> tuple[int, Any]:
    """One JSON request with urllib."""
    sent = dict(headers or {})
    if token:
        sent["X-STRETCHFS-Token"] = token
    status, reply = http_call(method, url, body, data=data, headers=sent, timeout=60)
    return status, decode_json(reply)


def wrk(url: str, seconds: int, connections: int = 50) -> float:
    """Requests per second that wrk measured against `url`."""
    out = subprocess.run(["wrk", "-t1", "-c{}".format(connections), "-d{}s".format(seconds),
                          url], capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError("wrk output without Requests/sec:\n" + out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError("wrk saw error answers:\n" + out)
    return float(match.group(1))


def start_script(code: str, *args: str) -> subprocess.Popen[bytes]:
    """Run a Python snippet in a child process and wait for its 'listening' line."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            env=ENV)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if b"listening" not in line:
        proc.kill()
        raise RuntimeError("child did not start")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM then KILL one child we started."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Cluster:
    """A local cluster (master, prisms, stores) with keys added to every node's [cluster]
    (`replicas` is read by the prism and the master's repair planner alike)."""

    def __init__(self, prisms: int, stores: int, cluster_extra: str = "") -> None:
        self.workdir = tempfile.mkdtemp(prefix="prism-bench-")
        original = cluster_mod.render_config

        def render(node: Any, *args: Any, **options: Any) -> str:
            text = original(node, *args, **options)
            if cluster_extra:
                text = text.replace("[cluster]\n", "[cluster]\n" + cluster_extra + "\n", 1)
            return text

        cluster_mod.render_config = render
        try:
            self.local = cluster_mod.LocalCluster(self.workdir, prisms=prisms, stores=stores,
                                                  say=lambda _: None)
            self.state = self.local.up(timeout=90)
        finally:
            cluster_mod.render_config = original
        self.prisms = [n for n in self.state["nodes"] if n["role"] == "prism"]
        self.stores = [n for n in self.state["nodes"] if n["role"] == "store"]
        self.master = self.state["master_url"]
        self.key = self.state["cluster_key"]
        user = self.state["user"]
        code, body = call(self.prisms[0]["url"] + "/user/login",
                          {"username": user["username"], "password": user["password"]})
        assert code == 200, body
        self.token = body["session"]["token"]
        self.wait_for_stores()

    def wait_for_stores(self, timeout: float = 30.0) -> None:
        """Until every prism's ping-net view lists the stores as available."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = 0
            for prism in self.prisms:
                status, body = http_get_json(prism["url"] + "/pingnet/status", key=self.key)
                peers = (body or {}).get("peers") or []
                names = {p.get("name") for p in peers if p.get("available", True)}
                ok += all(s["name"] in names for s in self.stores)
            if ok == len(self.prisms):
                return
            time.sleep(0.2)

    def down(self) -> None:
        """Stop everything and remove the work folder."""
        self.local.down()
        shutil.rmtree(self.workdir, ignore_errors=True)


def upload(prism: str, token: str, data: bytes, name: str = "f.bin",
           conn: http.client.HTTPConnection | None = None) -> dict[str, Any]:
    """One multipart upload (streamed from memory)."""
    boundary = "benchBoundary7"
    head = ('--{}\r\nContent-Disposition: form-data; name="file"; filename="{}"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n').format(boundary, name).encode()
    tail = "\r\n--{}--\r\n".format(boundary).encode()
    own = conn is None
    if conn is None:
        parts = urlsplit(prism)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    conn.putrequest("POST", "/content/upload")
    conn.putheader("Content-Type", "multipart/form-data; boundary=" + boundary)
    conn.putheader("Content-Length", str(len(head) + len(data) + len(tail)))
    conn.putheader("X-STRETCHFS-Token", token)
    conn.endheaders()
    conn.send(head)
    view = memoryview(data)
    for start in range(0, len(data), 1 << 20):
        conn.send(view[start:start + (1 << 20)])
    conn.send(tail)
    reply = conn.getresponse()
    body = json.loads(reply.read())
    if own:
        conn.close()
    if reply.status != 200:
        raise RuntimeError("upload failed: {} {}".format(reply.status, body))
    return body["files"]["file"]


def put_direct(store: str, key: str, data: bytes) -> None:
    """One PUT of `data` straight to a store."""
    sha1 = hashlib.sha1(data).hexdigest()
    parts = urlsplit(store)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    conn.putrequest("PUT", "/content/put/{}.bin".format(sha1))
    conn.putheader("Authorization", "Bearer " + key)
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders()
    view = memoryview(data)
    for start in range(0, len(data), 1 << 20):
        conn.send(view[start:start + (1 << 20)])
    reply = conn.getresponse()
    body = reply.read()
    conn.close()
    if reply.status not in (200, 201):
        raise RuntimeError("direct PUT failed: {} {!r}".format(reply.status, body[:200]))


# -- the benchmarks --------------------------------------------------------------

def bench_delivery(cluster: Cluster, seconds: int) -> None:
    """(a) redirects/s through the prism vs a bare Klein 302."""
    prism = cluster.prisms[0]["url"]
    data = os.urandom(4096)
    sha1 = upload(prism, cluster.token, data, "small.mp4")["sha1"]
    code, purchase = call(prism + "/content/purchase", {"hash": sha1, "ext": "mp4"},
                          token=cluster.token)
    assert code == 200, purchase
    url = "{}/{}/small.mp4".format(prism, purchase["token"])
    port = free_port()
    baseline = start_script(KLEIN_302, str(port))
    try:
        wrk("http://127.0.0.1:{}/t/x.mp4".format(port), 1)
        base_rps = wrk("http://127.0.0.1:{}/t/x.mp4".format(port), seconds)
    finally:
        stop(baseline)
    wrk(url, 1)
    prism_rps = wrk(url, seconds)
    say("(a) delivery 302: prism {:.0f} req/s, bare Klein 302 {:.0f} req/s, ratio {:.2f}x "
        "(target >= 0.6x)".format(prism_rps, base_rps, prism_rps / base_rps))
    # The same prism's HTTPS listener, same run (wrk keeps its 50 connections alive).
    tls_url = url.replace(prism, cluster.prisms[0]["https_url"], 1)
    wrk(tls_url, 1)
    tls_rps = wrk(tls_url, seconds)
    say("(a) delivery 302 over HTTPS: {:.0f} req/s vs plain HTTP {:.0f} req/s, ratio {:.2f}x "
        "(target >= 0.7x)".format(tls_rps, prism_rps, tls_rps / prism_rps))


def _rss_kib(pid: int) -> int:
    with open("/proc/{}/status".format(pid)) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _prism_against(master_port: int, folder: str) -> tuple[float, int]:
    """Start a prism on the stand-in master; (seconds to ready, RSS KiB when ready)."""
    port = free_port()
    config = os.path.join(folder, "prism.toml")
    with open(config, "w") as handle:
        handle.write("\n".join([
            "[node]", 'name = "prism1"', "[http]",
            'listen = "tcp:{}:interface=127.0.0.1"'.format(port),
            "[cluster]", 'key = "{}"'.format(KEY),
            'master_url = "http://127.0.0.1:{}"'.format(master_port),
            "[redis]", 'url = "redis://127.0.0.1:1/0"', "[ping]", "enabled = false", ""]))
    node = NodeProcess("prism", "prism1", config, os.path.join(folder, "prism.log"), env=ENV)
    started = time.monotonic()
    node.start()
    try:
        node.wait_listening(60)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if http_get_json("http://127.0.0.1:{}/health".format(port))[0] == 200:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("prism never became ready")
        ready = time.monotonic() - started
        time.sleep(1.0)
        return ready, _rss_kib(node.pid)
    finally:
        node.stop(timeout=10)


def bench_mirrors(entries: int) -> None:
    """(b) RSS per mirrored entry and load time, vs empty snapshots."""
    results = {}
    for label, count in (("empty", 0), ("full", entries)):
        port = free_port()
        master = start_script(STANDIN_MASTER, str(port), str(count), str(count))
        folder = tempfile.mkdtemp(prefix="prism-bench-mirror-")
        try:
            results[label] = _prism_against(port, folder)
        finally:
            stop(master)
            shutil.rmtree(folder, ignore_errors=True)
    (t0, rss0), (t1, rss1) = results["empty"], results["full"]
    per_entry = (rss1 - rss0) * 1024 / (2 * entries)
    say("(b) mirrors: {:,} inventory + {:,} purchases: RSS {:.0f} MiB vs {:.0f} MiB empty -> "
        "{:.0f} B/entry (target <= 150); ready after {:.1f} s vs {:.1f} s empty "
        "(load {:.1f} s, target <= 30 s)".format(entries, entries, rss1 / 1024, rss0 / 1024,
                                                  per_entry, t1, t0, t1 - t0))


def bench_large_upload(cluster: Cluster, size: int, rounds: int = 3) -> None:
    """(c) MiB/s of a large upload at replicas=2 vs one direct PUT (median of rounds)."""
    data = bytearray(os.urandom(size))
    uploads, puts, copies = [], [], []
    for index in range(rounds):
        data[0:4] = index.to_bytes(4, "big")
        os.sync()  # start each timed write with no earlier round's writeback pending
        start = time.monotonic()
        answer = upload(cluster.prisms[0]["url"], cluster.token, bytes(data), "big.bin")
        uploads.append(time.monotonic() - start)
        copies.append(answer["copies"])
        data[4] ^= 0xFF
        os.sync()
        start = time.monotonic()
        put_direct(cluster.stores[index % len(cluster.stores)]["url"], cluster.key, bytes(data))
        puts.append(time.monotonic() - start)
    mib = size / 1024 / 1024
    upload_s, put_s = statistics.median(uploads), statistics.median(puts)
    say("(c) {:.0f} MiB upload, median of {}: prism replicas=2 (copies {}) {:.0f} MiB/s, direct "
        "PUT to one store {:.0f} MiB/s, ratio {:.2f}x (target >= 0.5x); per round {}".format(
            mib, rounds, copies, mib / upload_s, mib / put_s, put_s / upload_s,
            ", ".join("{:.2f}x".format(p / u) for u, p in zip(uploads, puts))))


def bench_propagation(cluster: Cluster, changes: int) -> None:
    """(d) publish -> visible in two prisms' mirrors, p50/p99."""
    store = cluster.stores[0]["name"]
    headers = {"Authorization": "Bearer " + cluster.key}
    latencies = []
    for index in range(changes):
        sha1 = hashlib.sha1(b"propagation %d %f" % (index, time.time())).hexdigest()
        start = time.monotonic()
        code, body = call(cluster.master + "/inventory/publish",
                          {"store": store, "changes": [{"op": "add", "hash": sha1, "ext": "bin",
                                                        "size": 1}]}, headers=headers)
        assert code == 200, body
        _wait_visible(cluster, sha1, headers, start)
        latencies.append(time.monotonic() - start)
    _report_latencies("(d) feed propagation (master publish -> both mirrors)", cluster,
                      changes, latencies)
    latencies = []
    for index in range(changes):
        data = b"store put %d %f" % (index, time.time())
        sha1 = hashlib.sha1(data).hexdigest()
        start = time.monotonic()
        put_direct(cluster.stores[index % len(cluster.stores)]["url"], cluster.key, data)
        _wait_visible(cluster, sha1, headers, start)
        latencies.append(time.monotonic() - start)
    _report_latencies("(d') store PUT 201 -> store publishes -> both mirrors", cluster,
                      changes, latencies)


def _wait_visible(cluster: Cluster, sha1: str, headers: dict[str, str], start: float) -> None:
    pending = [p["url"] for p in cluster.prisms]
    while pending and time.monotonic() < start + 10:
        for prism in list(pending):
            code, seen = call(prism + "/mirror/inventory", {"hash": [sha1]}, headers=headers)
            if code == 200 and seen.get(sha1):
                pending.remove(prism)
        if pending:
            time.sleep(0.002)
    if pending:
        raise RuntimeError("change {} not visible after 10 s".format(sha1))


def _report_latencies(label: str, cluster: Cluster, changes: int,
                      latencies: list[float]) -> None:
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    say("{} over {} changes, {} prisms: p50 {:.0f} ms, p99 {:.0f} ms, max {:.0f} ms "
        "(target p99 <= 1000 ms)".format(label, changes, len(cluster.prisms), p50 * 1000,
                                          p99 * 1000, latencies[-1] * 1000))


def small_uploads(cluster: Cluster, count: int, clients: int = 8) -> float:
    """Uploads per second of `count` 4 KiB files from `clients` threads."""
    prism = urlsplit(cluster.prisms[0]["url"])
    per_client = count // clients
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        conn = http.client.HTTPConnection(prism.hostname, prism.port, timeout=60)
        try:
            for index in range(per_client):
                data = os.urandom(4096)
                upload("", cluster.token, data, "s{}-{}.bin".format(worker, index), conn=conn)
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.monotonic() - start
    if errors:
        raise RuntimeError("small uploads failed: {!r}".format(errors[0]))
    return per_client * clients / elapsed


def run(args: argparse.Namespace) -> None:
    """Run the selected benchmarks."""
    only = set(args.only)
    need_cluster = bool(only & set("acde"))
    if need_cluster:
        cluster = Cluster(prisms=2, stores=2)
        try:
            if "a" in only:
                bench_delivery(cluster, args.seconds)
            if "c" in only:
                bench_large_upload(cluster, args.upload_mib * 1024 * 1024)
            if "d" in only:
                bench_propagation(cluster, args.changes)
            if "e" in only:
                rate2 = small_uploads(cluster, args.small)
        finally:
            cluster.down()
        if "e" in only:
            single = Cluster(prisms=1, stores=2, cluster_extra="replicas = 1")
            try:
                rate1 = small_uploads(single, args.small)
            finally:
                single.down()
            say("(e) {} x 4 KiB uploads from 8 clients: replicas=1 {:.0f}/s, replicas=2 {:.0f}/s "
                "(ratio r2/r1 {:.2f})".format(args.small, rate1, rate2, rate2 / rate1))
    if "b" in only:
        bench_mirrors(args.entries)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk run length")
    parser.add_argument("--entries", type=int, default=1_000_000,
                        help="inventory rows and purchases for (b)")
    parser.add_argument("--upload-mib", type=int, default=256, help="size for (c)")
    parser.add_argument("--changes", type=int, default=200, help="changes for (d)")
    parser.add_argument("--small", type=int, default=1000, help="4 KiB uploads for (e)")
    parser.add_argument("--only", default="abcde", help="subset of abcde")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()

