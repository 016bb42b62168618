"""Store benchmarks, each printed as a ratio to a baseline measured in the same run.

(a) signed GETs of 4 KiB and 1 MiB files through a real store process
    (twistd stretchfs-store) vs twisted.web.static.File serving the same
    folder in the same kind of process (one Python, epoll reactor, no access
    log); wrk, 50 connections, median of --runs runs of --seconds each.
(b) the same GETs through the etc/nginx example in front of the store (nginx
    checks secure_link itself) vs plain nginx serving the same folder.
(c) PUT MB/s of a 256 MiB file into the store vs `cp` of the same file on
    the same disk.  Also shown, for reading it: cp followed by an fsync of
    the copy (a PUT is fsynced before it is answered); both with the source
    evicted from the page cache (so both read it from the disk); and
    hashlib's SHA1 of the file already in memory, on one core -- every PUT
    byte must be hashed in sequence, so that is the ceiling of any verified
    PUT, whatever else it does.
(d) inventory sync of 1,000,000 generated empty files against a master
    snapshot differing by 1 % (5,000 unknown files + 5,000 phantom rows):
    wall time and peak RSS of the store daemon's start-up sync, and of
    `stretchfs inventory sync`.  The master is a stand-in speaking the
    documented inventory routes (tests/store/standin_master.py), or with
    `--master real` a real `twistd stretchfs-master` on its own redis-server,
    loaded through `POST /inventory/publish`.

Every process is started here on 127.0.0.1 free ports and stopped by its
own PID; nginx runs with its own prefix, config and pid file in a temp dir.

    .venv/bin/python bench/store_bench.py [--runs 3] [--seconds 3] [--files 1000000]
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
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from stretchfs.devcluster.nginx import NginxProcess  # noqa: E402
from stretchfs.devcluster.ports import free_port  # noqa: E402
from stretchfs.devcluster.process import NodeProcess, http_get_json  # noqa: E402
from stretchfs.store.nginxconf import read_template, render_store_server  # noqa: E402
from stretchfs.wire.signing import content_path, delivery_secret, signed_query  # noqa: E402

KEY = "bench-cluster-key-0123456789abcdef"
ENV = dict(os.environ, PYTHONPATH=REPO)
STATIC_SERVER = """
import sys
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor
from twisted.web.static import File
from stretchfs.roles import QuietSite
site = QuietSite(File(sys.argv[1]))
site.noisy = False
reactor.listenTCP(int(sys.argv[2]), site, interface="127.0.0.1")
reactor.run()
"""
INVENTORY_CACHE = os.path.join(tempfile.gettempdir(), "stretchfs-bench-inventory")


def say(text: str) -> None:
    """Progress on stderr (the results go to stdout)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- process helpers -----------------------------------------------------------
def wait_port(port: int, timeout: float = 20.0) -> None:
    """Wait until 127.0.0.1:`port` accepts connections."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on {}".format(port))


def stop_popen(process: subprocess.Popen[Any]) -> None:
    """TERM then KILL one child we started."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def start_master(workdir: str, rows: str | None = None) -> tuple[subprocess.Popen[Any], int]:
    """The stand-in master (inventory routes only)."""
    port = free_port()
    args = [sys.executable, "-m", "tests.store.standin_master", "--port", str(port),
            "--key", KEY]
    if rows:
        args += ["--rows", rows, "--store", "store1"]
    log = open(os.path.join(workdir, "master-{}.log".format(port)), "ab")
    process = subprocess.Popen(args, env=ENV, stdout=log, stderr=log, cwd=REPO)
    log.close()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if http_get_json("http://127.0.0.1:{}/health".format(port))[0] == 200:
            return process, port
        if process.poll() is not None:
            raise RuntimeError("stand-in master exited")
        time.sleep(0.2)
    stop_popen(process)
    raise RuntimeError("stand-in master not up")


def start_real_master(workdir: str, rows: str | None = None) -> tuple[Any, int, float]:
    """Redis + `twistd stretchfs-master`, loaded with `rows` for store1; (handle, port, load s)."""
    from stretchfs.devcluster.redis_server import RedisProcess

    label = "master-{}".format(free_port())
    redis = RedisProcess(os.path.join(workdir, label + "-redis"), appendonly=False)
    redis.start()
    config = os.path.join(workdir, label + ".toml")
    with open(config, "w") as handle:
        handle.write("\n".join([
            "[node]", 'name = "master"', "[http]", 'listen = "tcp:0:interface=127.0.0.1"',
            "[cluster]", 'key = "{}"'.format(KEY), "[redis]", 'url = "{}"'.format(redis.url),
            ""]))
    node = NodeProcess("master", label, config, os.path.join(workdir, label + ".log"),
                       env=ENV)
    node.start()
    handle_pair = (node, redis)
    try:
        node.wait_listening(60)
        node.wait_healthy("http://127.0.0.1:{}".format(node.port), 60)
        started = time.monotonic()
        if rows:
            connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=300)
            batch: list[dict[str, Any]] = []
            with open(rows, "rb") as source:
                for line in source:
                    row = json.loads(line)
                    batch.append({"op": "add", "hash": row["hash"], "ext": row["ext"],
                                  "size": row["size"]})
                    if len(batch) == 10_000:
                        _publish(connection, batch)
                        batch = []
            if batch:
                _publish(connection, batch)
            connection.close()
        return handle_pair, node.port, time.monotonic() - started
    except BaseException:
        node.stop()
        redis.stop()
        raise


def _publish(connection: http.client.HTTPConnection, changes: list[dict[str, Any]]) -> None:
    body = json.dumps({"store": "store1", "changes": changes}).encode()
    connection.request("POST", "/inventory/publish", body=body,
                       headers={"Authorization": "Bearer " + KEY,
                                "Content-Type": "application/json"})
    reply = connection.getresponse()
    answer = reply.read()
    if reply.status != 200:
        raise RuntimeError("master publish answered {}: {!r}".format(reply.status, answer[:200]))


def stop_real_master(handle_pair: Any) -> None:
    """Stop the master and its Redis (ours, by PID)."""
    node, redis = handle_pair
    node.stop()
    redis.stop()


def start_store(workdir: str, root: str, master_port: int, label: str) -> NodeProcess:
    """A real `twistd stretchfs-store` on a free port."""
    config = os.path.join(workdir, label + ".toml")
    with open(config, "w") as handle:
        handle.write("\n".join([
            "[node]", 'name = "store1"', "[http]", 'listen = "tcp:0:interface=127.0.0.1"',
            "[cluster]", 'key = "{}"'.format(KEY),
            'master_url = "http://127.0.0.1:{}"'.format(master_port),
            "[redis]", 'url = "redis://127.0.0.1:1/0"', "[ping]", "enabled = false",
            "[store]", 'root = "{}"'.format(root), "min_free = 0", 'max_put = "2 GiB"', ""]))
    node = NodeProcess("store", label, config, os.path.join(workdir, label + ".log"), env=ENV)
    node.start()
    node.wait_listening(60)
    return node


# -- wrk ---------------------------------------------------------------------------
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def wrk(url: str, seconds: float, connections: int = 50) -> tuple[float, float]:
    """(requests/s, bytes/s) of one wrk run."""
    result = subprocess.run(["wrk", "-t2", "-c{}".format(connections),
                             "-d{}s".format(max(1, int(round(seconds)))), url],
                            capture_output=True, text=True, timeout=seconds + 60)
    out = result.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tps = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?)B", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not rps or not tps:
        raise RuntimeError("wrk output not understood: " + out + result.stderr)
    if errors:
        raise RuntimeError("wrk saw {} error responses for {}".format(errors.group(1), url))
    return float(rps.group(1)), float(tps.group(1)) * _UNITS[tps.group(2)]


def median_wrk(url: str, runs: int, seconds: float) -> tuple[float, float]:
    """Median requests/s and bytes/s over `runs` runs (after a short warm-up)."""
    wrk(url, 1)
    samples = [wrk(url, seconds) for _ in range(runs)]
    return (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))


def interleaved(urls: dict[str, str], runs: int, seconds: float) -> dict[str, tuple[float, float]]:
    """Median wrk figures per URL, alternating between them run by run (fairer on noise)."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
    for url in urls.values():
        wrk(url, 1)
    for _ in range(runs):
        for name, url in urls.items():
            samples[name].append(wrk(url, seconds))
    return {name: (statistics.median(s[0] for s in got), statistics.median(s[1] for s in got))
            for name, got in samples.items()}


# -- content -----------------------------------------------------------------------
def put(port: int, sha1: str, ext: str, path: str) -> float:
    """PUT a file into the store with sendfile (the client costs little CPU); seconds."""
    import socket

    size = os.path.getsize(path)
    head = ("PUT /content/put/{}.{} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n"
            "Content-Length: {}\r\nConnection: close\r\n\r\n").format(sha1, ext, KEY, size)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock, \
            open(path, "rb") as handle:
        sock.sendall(head.encode())
        sock.sendfile(handle)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    elapsed = time.perf_counter() - started
    if not reply.startswith(b"HTTP/1.1 201"):
        raise RuntimeError("PUT answered {!r}".format(reply[:100]))
    return elapsed


def evict_from_cache(path: str) -> None:
    """Drop `path` from the page cache (flushed first), so the next read hits the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def median_sha1_seconds(path: str, runs: int) -> float:
    """Median seconds for hashlib to SHA1 the file's bytes already in memory
    (in 64 KiB slices, its fastest pace here)."""
    with open(path, "rb") as handle:
        data = handle.read()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        digest = hashlib.sha1()
        view = memoryview(data)
        for offset in range(0, len(data), 64 * 1024):
            digest.update(view[offset:offset + 64 * 1024])
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def remove(port: int, sha1: str) -> None:
    """Remove a content from the store."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/content/remove", body=json.dumps({"hash": sha1}),
                       headers={"Authorization": "Bearer " + KEY})
    connection.getresponse().read()
    connection.close()


def random_file(path: str, size: int) -> str:
    """Write `size` random bytes to `path`; its SHA1."""
    digest = hashlib.sha1()
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(left, 1024 * 1024))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def signed_url(port: int, sha1: str, ext: str) -> str:
    """A delivery URL valid for an hour."""
    path = content_path(sha1, ext)
    return "http://127.0.0.1:{}{}?{}".format(
        port, path, signed_query(delivery_secret(KEY), path, int(time.time()) + 3600))


def plain_url(port: int, sha1: str) -> str:
    """An unsigned URL of a content (for the baseline servers)."""
    return "http://127.0.0.1:{}{}".format(port, content_path(sha1, "bin"))


def compare_gets(label: str, files: dict[str, str], args: argparse.Namespace, target: float,
                 lines: list[str], ours: Any, base: Any) -> None:
    """wrk each file through `ours(sha1)` and `base(sha1)`, interleaved; one line each
    (req/s for 4 KiB, MB/s otherwise)."""
    for size, sha1 in files.items():
        got = interleaved({"ours": ours(sha1), "base": base(sha1)}, args.runs, args.seconds)
        unit, index, scale = ("req/s", 0, 1.0) if size == "4 KiB" else ("MB/s", 1, 1e6)
        lines.append(ratio_line(label.format(size), got["ours"][index] / scale,
                                got["base"][index] / scale, unit, target))


def ratio_line(label: str, ours: float, base: float, unit: str, target: float) -> str:
    """One result line."""
    ratio = ours / base if base else float("nan")
    return "{:<44} {:>12.1f} {:>12.1f} {:<6} {:>6.2f}x  (target >= {}x) {}".format(
        label, ours, base, unit, ratio, target, "OK" if ratio >= target else "BELOW")


# -- benchmarks ----------------------------------------------------------------------
def bench_get(workdir: str, args: argparse.Namespace, lines: list[str]) -> None:
    """(a) and (b)."""
    master, master_port = start_master(workdir)
    root = os.path.join(workdir, "get-root")
    store = start_store(workdir, root, master_port, "store-get")
    static = nginx_front = nginx_plain = None
    try:
        files = {}
        for label, size in (("4 KiB", 4096), ("1 MiB", 1024 * 1024)):
            source = os.path.join(workdir, "get-{}.bin".format(size))
            sha1 = random_file(source, size)
            put(store.port, sha1, "bin", source)
            files[label] = sha1
        static_port = free_port()
        static = subprocess.Popen([sys.executable, "-c", STATIC_SERVER, root, str(static_port)],
                                  env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(static_port)
        say("(a) store process vs twisted.web.static.File")
        compare_gets("(a) GET {} store vs static.File", files, args, 0.9, lines,
                     lambda sha1: signed_url(store.port, sha1, "bin"),
                     lambda sha1: plain_url(static_port, sha1))
        stop_popen(static)
        static = None

        say("(b) etc/nginx example in front of the store vs plain nginx")
        front_port, plain_port = free_port(), free_port()
        nginx_front = NginxProcess(os.path.join(workdir, "nginx-front"), render_store_server(
            read_template(), listen="127.0.0.1:{}".format(front_port), root=root,
            secret=delivery_secret(KEY), upstream="127.0.0.1:{}".format(store.port)),
            front_port)
        nginx_front.start()
        plain = "server {{ listen 127.0.0.1:{}; root {}; location / {{ }} }}".format(
            plain_port, root)
        nginx_plain = NginxProcess(os.path.join(workdir, "nginx-plain"), plain, plain_port)
        nginx_plain.start()
        compare_gets("(b) GET {} nginx+secure_link vs plain nginx", files, args, 0.8, lines,
                     lambda sha1: signed_url(front_port, sha1, "bin"),
                     lambda sha1: plain_url(plain_port, sha1))
    finally:
        for nginx in (nginx_front, nginx_plain):
            if nginx is not None:
                nginx.stop()
        if static is not None:
            stop_popen(static)
        store.stop()
        stop_popen(master)


def bench_put(workdir: str, args: argparse.Namespace, lines: list[str]) -> None:
    """(c)."""
    master, master_port = start_master(workdir)
    root = os.path.join(workdir, "put-root")
    store = start_store(workdir, root, master_port, "store-put")
    try:
        size = args.put_mib * 1024 * 1024
        source = os.path.join(workdir, "put-source.bin")
        say("(c) PUT of {} MiB vs cp".format(args.put_mib))
        sha1 = random_file(source, size)
        subprocess.run(["sync", source], check=True)
        puts, cps, cps_sync, puts_cold, cps_cold = [], [], [], [], []
        target = os.path.join(workdir, "put-copy.bin")

        def timed_cp(then_sync: bool = False) -> float:
            started = time.perf_counter()
            subprocess.run(["cp", source, target], check=True)
            if then_sync:
                subprocess.run(["sync", target], check=True)
            elapsed = time.perf_counter() - started
            os.unlink(target)
            return elapsed

        for _ in range(args.runs):
            puts.append(put(store.port, sha1, "bin", source))
            remove(store.port, sha1)
            cps.append(timed_cp())
            cps_sync.append(timed_cp(then_sync=True))
            evict_from_cache(source)
            puts_cold.append(put(store.port, sha1, "bin", source))
            remove(store.port, sha1)
            evict_from_cache(source)
            cps_cold.append(timed_cp())
        hashing = median_sha1_seconds(source, args.runs)
        mb = size / 1e6

        def rate(samples: list[float]) -> float:
            return mb / statistics.median(samples)

        lines.append(ratio_line("(c) PUT {} MiB vs cp".format(args.put_mib), rate(puts),
                                rate(cps), "MB/s", 0.5))
        lines.append(ratio_line("    (info) PUT vs cp + fsync of the copy", rate(puts),
                                rate(cps_sync), "MB/s", 0.5))
        lines.append(ratio_line("    (info) PUT vs cp, source not cached",
                                rate(puts_cold), rate(cps_cold), "MB/s", 0.5))
        lines.append(ratio_line("    (info) SHA1 alone (1 core) vs cp",
                                mb / hashing, rate(cps), "MB/s", 0.5))
        os.unlink(source)
    finally:
        store.stop()
        stop_popen(master)


def generate_inventory(count: int) -> tuple[str, str]:
    """A cached root of `count` empty files and a master rows file differing by 1 %."""
    folder = "{}-{}".format(INVENTORY_CACHE, count)
    root = os.path.join(folder, "root")
    rows = os.path.join(folder, "master-rows.ndjson")
    marker = os.path.join(folder, "complete")
    if os.path.exists(marker):
        return root, rows
    shutil.rmtree(folder, ignore_errors=True)
    say("(d) generating {} empty files in {} (cached for later runs)".format(count, root))
    content = os.path.join(root, "content")
    os.makedirs(content, exist_ok=True)
    unknown = count // 200
    made: set[str] = set()
    with open(rows, "w") as out:
        for index in range(count):
            sha1 = hashlib.sha1(b"file %d" % index).hexdigest()
            folder_path = os.path.join(content, sha1[:2], sha1[2:4])
            if sha1[:4] not in made:
                os.makedirs(folder_path, exist_ok=True)
                made.add(sha1[:4])
            os.close(os.open(os.path.join(folder_path, sha1 + ".bin"),
                             os.O_CREAT | os.O_WRONLY, 0o644))
            if index >= unknown:
                out.write('{"hash":"%s","ext":"bin","size":0}\n' % sha1)
            if index % 100_000 == 0 and index:
                say("    {} files".format(index))
        for index in range(unknown):
            phantom = hashlib.sha1(b"phantom %d" % index).hexdigest()
            out.write('{"hash":"%s","ext":"bin","size":0}\n' % phantom)
    with open(marker, "w") as handle:
        handle.write("ok\n")
    return root, rows


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a live process, in MB."""
    with open("/proc/{}/status".format(pid)) as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_sync(workdir: str, args: argparse.Namespace, lines: list[str]) -> None:
    """(d)."""
    root, rows = generate_inventory(args.files)
    journal = os.path.join(root, "journal")
    differences = (args.files // 200) * 2
    real = args.master == "real"
    say("(d) {} master loading {} rows".format("real" if real else "stand-in", args.files))
    if real:
        master, master_port, load_seconds = start_real_master(workdir, rows)
        say("    loaded in {:.1f} s".format(load_seconds))
    else:
        master, master_port = start_master(workdir, rows)
    label = "real master" if real else "stand-in master"
    try:
        shutil.rmtree(journal, ignore_errors=True)
        say("(d) store daemon start-up sync")
        store = start_store(workdir, root, master_port, "store-sync")
        try:
            deadline = time.monotonic() + 300
            done = None
            while done is None and time.monotonic() < deadline:
                done = next((e for e in store.events() if e.get("event") == "inventory_synced"),
                            None)
                time.sleep(0.2)
            if done is None:
                raise RuntimeError("store did not finish its sync")
            rss = peak_rss_mb(store.pid)
        finally:
            store.stop()
        changed = done["added"] + done["removed"]
        lines.append("{:<44} {:>9.1f} s  {:>7.0f} MB RSS  files={} differences={} "
                     "(expected {})  (target <= 60 s, <= 300 MB) {}".format(
                         "(d) store daemon sync, {} files".format(args.files) + (
                             " [{}]".format(label)), done["seconds"],
                         rss, done["files"], changed, differences,
                         "OK" if done["seconds"] <= 60 and rss <= 300 else "BELOW"))
        if real:
            stop_real_master(master)
            master, master_port, _ = start_real_master(workdir, rows)
        else:
            stop_popen(master)
            master, master_port = start_master(workdir, rows)
        say("(d) stretchfs inventory sync (CLI)")
        config = os.path.join(workdir, "store-sync.toml")
        text = open(config).read().replace(
            re.search(r'master_url = "[^"]*"', open(config).read()).group(0),
            'master_url = "http://127.0.0.1:{}"'.format(master_port))
        with open(config, "w") as handle:
            handle.write(text)
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "stretchfs.cli.main", "inventory",
                                    "sync", "--config", config, "--quiet"], env=ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.monotonic() - started
        output = process.stdout.read().decode() if process.stdout else ""
        process.returncode = os.waitstatus_to_exitcode(status)
        rss = usage.ru_maxrss / 1024
        lines.append("{:<44} {:>9.1f} s  {:>7.0f} MB RSS  exit={}  (target <= 60 s, <= 300 MB)"
                     " {}".format("(d) stretchfs inventory sync (CLI)", elapsed, rss,
                                  process.returncode,
                                  "OK" if elapsed <= 60 and rss <= 300 else "BELOW"))
        lines.append("    CLI said: " + output.strip().splitlines()[-1] if output.strip()
                     else "    CLI said nothing")
    finally:
        if real:
            stop_real_master(master)
        else:
            stop_popen(master)
        shutil.rmtree(journal, ignore_errors=True)


def main() -> int:
    """Run the selected benchmarks and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--put-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["get", "put", "sync"], action="append")
    parser.add_argument("--master", choices=["standin", "real"], default="standin",
                        help="(d) against tests/store/standin_master.py or a real master + Redis")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20 or not 0.5 <= args.seconds <= 30:
        parser.error("--runs 1..20, --seconds 0.5..30")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed")
    chosen = args.only or ["get", "put", "sync"]
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="stretchfs-store-bench-") as workdir:
        if "get" in chosen:
            bench_get(workdir, args, lines)
        if "put" in chosen:
            bench_put(workdir, args, lines)
        if "sync" in chosen:
            bench_sync(workdir, args, lines)
    print("store bench: wrk -t2 -c50, median of {} x {} s runs (interleaved), {} cores".format(
        args.runs, args.seconds, os.cpu_count()))
    print("{:<44} {:>12} {:>12} {:<6} {:>7}".format("benchmark", "ours", "baseline", "unit",
                                                    "ratio"))
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
