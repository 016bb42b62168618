"""Ping-net benchmark: detection, recovery, false verdicts, gray failure, cost.

Runs N real ping-net processes (`python -m stretchfs.pingnet.runner`, the
production `PingNet`) plus a private redis-server, all on 127.0.0.1 inside a
network namespace this script creates and deletes (so an nftables
`numgen random` drop rule can inject packet loss on the ping ports only).
Verdicts are read from each node's JSON log (event `pingnet_verdict`, with
the node's wall-clock time).

    sudo .venv/bin/python bench/pingnet_bench.py --sizes 5,16 --trials 10 --window 60

Full matrix per N: `--trials` SIGKILL trials and `--trials` SIGSTOP/SIGCONT
trials (first and all survivors' detection, recovery), then windows of
`--window` seconds: idle, two busy loops, 10 % and 30 % loss, gray failure
(2 s stopped / 0.5 s running), and a cost window (CPU %, datagrams/s per node,
Redis commands/s cluster-wide).  After all sizes it prints the slope of
datagrams per node per second over N (flat: K observers per peer) and the
load average.  `--observers K` sets `[ping] observers` on every node
(`--baseline-observers` adds an all-pairs run at the smallest size for a
ratio in the same run).  `--simulate 256,1000` runs the production `PingNet` on the
tests' simulated network instead (one task.Clock; `--sim-loss`, `--sim-seconds`,
`--sim-victims`): detection and false verdicts at sizes no machine here can run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PING_PORT_BASE = 31000
REDIS_PORT = 31999
FLAP_WINDOW_SECONDS = 20.0
ROTATE_SECONDS = 120.0      # [ping] rotate, the runner's default
GRACE_SECONDS = 5.0         # [ping] clock_window: both epochs hold this long either side
KINDS = {1: "ping", 2: "pong", 3: "ping_req", 4: "relay_ack"}  # packet.py, byte 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capture its output."""
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


class Namespace:
    """A private network namespace (or the host's, when not root)."""

    def __init__(self, use: bool) -> None:
        self.name = "sfsbench{}".format(os.getpid()) if use else ""
        self.loss_rule = False

    def __enter__(self) -> "Namespace":
        if self.name:
            sh("ip", "netns", "add", self.name)
            sh("ip", "-n", self.name, "link", "set", "lo", "up")
            self._count_kinds()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.name:
            sh("ip", "netns", "del", self.name, check=False)

    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name] if self.name else []

    def set_loss(self, percent: int) -> None:
        """Drop `percent` % of ping-port UDP packets (output hook of lo); 0 removes the rule."""
        if not self.name:
            raise RuntimeError("loss injection needs root and a network namespace")
        run = self.prefix()
        subprocess.run(run + ["nft", "delete", "table", "inet", "sfsbench"],
                       capture_output=True)
        if percent <= 0:
            return
        ports = "{}-{}".format(PING_PORT_BASE, PING_PORT_BASE + 999)
        script = (
            "table inet sfsbench {{\n chain out {{\n  type filter hook output priority 0;\n"
            "  udp dport {ports} counter\n"
            "  udp dport {ports} numgen random mod 100 < {p} counter drop\n }}\n}}\n"
        ).format(ports=ports, p=percent)
        subprocess.run(run + ["nft", "-f", "-"], input=script, text=True, check=True,
                       capture_output=True)

    def _count_kinds(self) -> None:
        """Count ping-port datagrams by packet kind (the second payload byte)."""
        ports = "{}-{}".format(PING_PORT_BASE, PING_PORT_BASE + 999)
        rules = "".join("  udp dport {} @th,72,8 {} counter\n".format(ports, kind)
                        for kind in KINDS)
        script = ("table inet sfscount {{\n chain out {{\n  type filter hook output "
                  "priority -10;\n{} }}\n}}\n").format(rules)
        subprocess.run(self.prefix() + ["nft", "-f", "-"], input=script, text=True,
                       check=True, capture_output=True)

    def kind_counts(self) -> dict[str, int]:
        """Ping-port datagrams sent so far, by packet kind."""
        out = subprocess.run(self.prefix() + ["nft", "list", "table", "inet", "sfscount"],
                             capture_output=True, text=True).stdout
        counts = [int(line.split("packets")[1].split()[0])
                  for line in out.splitlines() if "packets" in line]
        return dict(zip(KINDS.values(), counts)) if len(counts) == len(KINDS) else {}

    def loss_counters(self) -> tuple[int, int]:
        """(packets seen, packets dropped) by the loss rule."""
        out = subprocess.run(self.prefix() + ["nft", "list", "table", "inet", "sfsbench"],
                             capture_output=True, text=True).stdout
        counts = [int(line.split("packets")[1].split()[0])
                  for line in out.splitlines() if "packets" in line]
        return (counts[0], counts[1]) if len(counts) >= 2 else (0, 0)

    def udp_out(self) -> int:
        """Udp OutDatagrams of the namespace."""
        text = subprocess.run(self.prefix() + ["cat", "/proc/net/snmp"], capture_output=True,
                              text=True).stdout
        lines = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
        return int(dict(zip(lines[0], lines[1]))["OutDatagrams"])


class Process:
    """One ping-net runner process (one node, or several with --per-process) and its log."""

    def __init__(self, bench: "Bench", names: list[str]) -> None:
        self.bench = bench
        self.names = names
        self.log = os.path.join(bench.workdir, names[0] + ".log")
        self.proc: subprocess.Popen | None = None
        self._offset = 0

    def start(self) -> None:
        """Spawn the runner."""
        args = self.bench.ns.prefix() + [
            sys.executable, "-m", "stretchfs.pingnet.runner", "--name", ",".join(self.names),
            "--registry", self.bench.registry_path, "--redis", self.bench.redis_url,
            "--key", self.bench.key, "--observers", str(self.bench.observers)]
        env = dict(os.environ, PYTHONPATH=REPO)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)

    def poll(self) -> None:
        """Read new log events into the nodes' records."""
        try:
            with open(self.log, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        cut = data.rfind(b"\n") + 1
        self._offset += cut
        for line in data[:cut].splitlines():
            if not line.startswith(b"{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "pingnet_verdict":
                node = self.bench.nodes[event.get("observer", self.names[0])]
                node.verdicts.append((event["time"], event["peer"], event["available"]))
            elif kind == "pingnet_listening":
                self.bench.nodes[event.get("node", self.names[0])].listening_at = event["time"]

    def signal(self, signum: int) -> None:
        """Signal the process if it runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def stop(self) -> None:
        """TERM, then KILL."""
        if self.proc is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def cpu_seconds(self) -> float:
        """utime + stime of the process."""
        assert self.proc is not None
        with open("/proc/{}/stat".format(self.proc.pid)) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Node:
    """One ping-net node: its verdicts, and the process it runs in."""

    def __init__(self, process: Process, name: str) -> None:
        self.process = process
        self.name = name
        self.verdicts: list[tuple[float, str, bool]] = []   # (time, peer, available)
        self.listening_at = 0.0

    @property
    def proc(self) -> subprocess.Popen | None:
        """The runner process."""
        return self.process.proc

    def start(self) -> None:
        """(Re)start the node's process (victims run alone in theirs)."""
        self.process.start()

    def signal(self, signum: int) -> None:
        """Signal the node's process."""
        self.process.signal(signum)

    def cpu_seconds(self) -> float:
        """This node's share of its process's CPU seconds."""
        return self.process.cpu_seconds() / len(self.process.names)

    def view_of(self, peer: str, since: float) -> bool | None:
        """The latest verdict on `peer` logged after `since` (None: no change)."""
        found = None
        for when, name, available in self.verdicts:
            if name == peer and when >= since:
                found = available
        return found

    def first_change(self, peer: str, since: float, available: bool) -> float | None:
        """Time of the first verdict `available` on `peer` after `since`."""
        for when, name, up in self.verdicts:
            if name == peer and when >= since and up is available:
                return when
        return None


class Bench:
    """One cluster of N nodes with its Redis."""

    def __init__(self, size: int, ns: Namespace, workdir: str, observers: int,
                 per_process: int = 1, singles: int = 8) -> None:
        self.size = size
        self.observers = observers
        self.ns = ns
        self.workdir = workdir
        self.key = secrets.token_urlsafe(24)
        self.redis_url = "redis://127.0.0.1:{}/0".format(REDIS_PORT)
        self.registry_path = os.path.join(workdir, "registry.json")
        self.names = ["n{:02d}".format(i) for i in range(size)]
        # the first `singles` nodes (the victims) run alone; the rest `per_process` a process
        alone = self.names[:singles] if per_process > 1 else self.names
        rest = self.names[len(alone):]
        groups = [[name] for name in alone] + [rest[i:i + per_process]
                                               for i in range(0, len(rest), per_process)]
        self.processes = [Process(self, group) for group in groups]
        self.nodes = {name: Node(process, name) for process in self.processes
                      for name in process.names}
        self.victims = alone[1:]
        self.redis: subprocess.Popen | None = None
        self.last_victim_use: dict[str, float] = {}

    def start(self) -> None:
        """Redis, registry, nodes; wait until all listen and settle."""
        self.redis = subprocess.Popen(self.ns.prefix() + [
            "redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = [{"name": name, "role": "store", "host": "127.0.0.1", "port": 1,
                 "ping_port": PING_PORT_BASE + i, "active": True, "writable": True}
                for i, name in enumerate(self.names)]
        with open(self.registry_path, "w") as handle:
            json.dump(rows, handle)
        time.sleep(0.3)
        for process in self.processes:
            process.start()
        deadline = time.time() + 60 + 4 * self.size  # 64 imports on 2 busy cores are slow
        while time.time() < deadline:
            self.poll()
            if all(n.listening_at for n in self.nodes.values()):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("nodes did not start; logs in {}".format(self.workdir))
        time.sleep(3.0)

    def stop(self) -> None:
        """Stop every process this bench started."""
        for process in self.processes:
            process.stop()
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(5)

    def poll(self) -> None:
        """Read every node's new log events."""
        for process in self.processes:
            process.poll()

    def wait_all(self, victim: str, since: float, available: bool,
                 timeout: float) -> tuple[float | None, float | None]:
        """Wait until every other node logged `available` on victim; (first, all) times."""
        survivors = [n for n in self.nodes.values() if n.name != victim]
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.poll()
            times = [n.first_change(victim, since, available) for n in survivors]
            if all(t is not None for t in times):
                return min(times), max(times)  # type: ignore[type-var]
            time.sleep(0.05)
        done = [t for t in (n.first_change(victim, since, available) for n in survivors)
                if t is not None]
        return (min(done) if done else None), None

    def pick_victim(self) -> str:
        """The victim least recently used; waits so it is not counted as flapping."""
        candidates = self.victims
        victim = min(candidates, key=lambda n: self.last_victim_use.get(n, 0.0))
        wait = self.last_victim_use.get(victim, 0.0) + FLAP_WINDOW_SECONDS + 1 - time.time()
        if wait > 0:
            time.sleep(wait)
        return victim

    def redis_commands(self) -> int:
        """total_commands_processed of the bench's redis-server."""
        out = sh(*(self.ns.prefix() + ["redis-cli", "-p", str(REDIS_PORT), "info",
                                       "stats"])).stdout
        for line in out.splitlines():
            if line.startswith("total_commands_processed:"):
                return int(line.split(":")[1])
        raise RuntimeError("no total_commands_processed in INFO stats")

    def false_verdicts(self, since: float, until: float, exclude: str = "") -> int:
        """Down verdicts logged in [since, until] on peers other than `exclude`."""
        self.poll()
        return sum(1 for n in self.nodes.values() for when, peer, up in n.verdicts
                   if since <= when <= until and not up and peer != exclude)


def summary(values: list[float]) -> str:
    """median (min-max) in seconds."""
    if not values:
        return "-"
    return "{:.2f} ({:.2f}-{:.2f})".format(statistics.median(values), min(values), max(values))


def run_trials(bench: Bench, kind: str, trials: int) -> dict[str, Any]:
    """SIGKILL (+restart) or SIGSTOP (+SIGCONT) trials."""
    first, every, recovery, recovery_up, misses = [], [], [], [], 0
    for _ in range(trials):
        victim = bench.pick_victim()
        node = bench.nodes[victim]
        t0 = time.time()
        node.signal(signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
        one, done = bench.wait_all(victim, t0, False, 15.0)
        if one is not None:
            first.append(one - t0)
        if done is None:
            misses += 1
        else:
            every.append(done - t0)
        t1 = time.time()
        if kind == "kill":
            node.proc.wait(5)
            node.listening_at = 0.0
            node.start()
        else:
            node.signal(signal.SIGCONT)
        _one, back = bench.wait_all(victim, t1, True, 20.0)
        if back is not None:
            recovery.append(back - t1)
            if kind == "kill":
                bench.poll()
                recovery_up.append(back - node.listening_at)
        bench.last_victim_use[victim] = time.time()
        time.sleep(1.0)
    return {"first": first, "all": every, "recovery": recovery, "recovery_up": recovery_up,
            "undetected": misses}


def busy_loops(count: int) -> list[subprocess.Popen]:
    """Start `count` CPU-burning processes."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(count)]


def window(bench: Bench, seconds: float, label: str, loss: int = 0,
           hogs: int = 0) -> str:
    """A false-verdict window."""
    procs = busy_loops(hogs)
    if loss:
        bench.ns.set_loss(loss)
    start = time.time()
    try:
        time.sleep(seconds)
    finally:
        seen, dropped = bench.ns.loss_counters() if loss else (0, 0)
        if loss:
            bench.ns.set_loss(0)
        for proc in procs:
            proc.kill()
            proc.wait()
    false = bench.false_verdicts(start, time.time())
    extra = " (measured drop {:.1f} % of {} packets)".format(
        100.0 * dropped / seen, seen) if seen else ""
    return "{:<22} {:>3} false verdicts in {:.0f} s{}".format(label, false, seconds, extra)


def gray(bench: Bench, seconds: float) -> list[str]:
    """One node SIGSTOPped 2 s / SIGCONTed 0.5 s in a loop."""
    victim = bench.pick_victim()
    node = bench.nodes[victim]
    start = time.time()
    try:
        while time.time() - start < seconds:
            node.signal(signal.SIGSTOP)
            time.sleep(2.0)
            node.signal(signal.SIGCONT)
            time.sleep(0.5)
    finally:
        node.signal(signal.SIGCONT)
    end = time.time()
    bench.poll()
    survivors = [n for n in bench.nodes.values() if n.name != victim]
    out_times = [n.first_change(victim, start, False) for n in survivors]
    changes = [sum(1 for when, peer, _ in n.verdicts if peer == victim and start <= when <= end)
               for n in survivors]
    down_at_end = sum(1 for n in survivors if n.view_of(victim, start) is False)
    # verdict changes after the first time every survivor had it out
    out_all = max(out_times) if all(out_times) else None
    later = [sum(1 for when, peer, _ in n.verdicts
                 if peer == victim and out_all is not None and out_all < when <= end)
             for n in survivors]
    # after each survivor's second "down" (the flap hold is engaged): changes, and the
    # most changes in any 30 s span of the window
    held, busiest = [], []
    for n in survivors:
        times = [when for when, peer, _ in n.verdicts if peer == victim and start <= when <= end]
        downs = [when for when, peer, up in n.verdicts
                 if peer == victim and not up and start <= when <= end]
        if len(downs) >= 2:
            held.append(sum(1 for when in times if when > downs[1]))
        busiest.append(max((sum(1 for u in times if t <= u < t + 30.0) for t in times),
                           default=0))
    bench.last_victim_use[victim] = time.time()
    return [
        "gray failure ({}: 2 s stopped / 0.5 s running, {:.0f} s)".format(victim, seconds),
        "  taken out by all survivors after {}".format(
            "{:.2f} s".format(out_all - start) if out_all else "never (not by all)"),
        "  verdict changes per survivor: max {} (after all had it out: max {})".format(
            max(changes), max(later) if later else "-"),
        "  changes after the second down (flap hold engaged): max {}; most changes in any "
        "30 s span: {}".format(max(held) if held else "-", max(busiest)),
        "  survivors with it out at the end: {}/{}".format(down_at_end, len(survivors)),
        "  false verdicts on healthy nodes: {}".format(
            bench.false_verdicts(start, end, exclude=victim)),
    ]


def boundary_wait(now: float, seconds: float) -> float:
    """Seconds to wait so a window of `seconds` starting then holds no epoch boundary
    (both epochs' targets are probed within GRACE_SECONDS either side of one)."""
    nxt = (now // ROTATE_SECONDS + 1) * ROTATE_SECONDS
    prev = nxt - ROTATE_SECONDS
    if now < prev + GRACE_SECONDS:
        return prev + GRACE_SECONDS - now
    if now + seconds > nxt - GRACE_SECONDS:
        return nxt + GRACE_SECONDS - now
    return 0.0


def cost(bench: Bench, seconds: float) -> tuple[str, float]:
    """CPU % per node, UDP datagrams sent per node per second (by kind) and Redis
    commands per second cluster-wide, idle, in a window between two epoch boundaries
    (the steady state); (report line, datagrams per node per second)."""
    seconds = min(seconds, ROTATE_SECONDS - 2 * GRACE_SECONDS - 1.0)
    time.sleep(boundary_wait(time.time(), seconds))
    cpu0 = {n.name: n.cpu_seconds() for n in bench.nodes.values()}
    udp0 = bench.ns.udp_out() if bench.ns.name else 0
    kinds0 = bench.ns.kind_counts() if bench.ns.name else {}
    redis0 = bench.redis_commands()
    start = time.time()
    time.sleep(seconds)
    elapsed = time.time() - start
    commands = (bench.redis_commands() - redis0 - 1) / elapsed  # minus our own INFO
    cpus = [100.0 * (n.cpu_seconds() - cpu0[n.name]) / elapsed for n in bench.nodes.values()]
    udp = (bench.ns.udp_out() - udp0) / elapsed / bench.size if bench.ns.name else float("nan")
    kinds1 = bench.ns.kind_counts() if bench.ns.name else {}
    by_kind = ", ".join("{} {:.1f}".format(kind, (kinds1[kind] - kinds0.get(kind, 0))
                                           / elapsed / bench.size) for kind in kinds1)
    return ("cost (idle {:.0f} s between epoch boundaries, K = {}): CPU per node {:.2f} % "
            "median ({:.2f}-{:.2f} %); {:.1f} UDP datagrams sent per node per second ({}); "
            "Redis {:.0f} commands/s cluster-wide ({:.1f} x N)").format(
        seconds, bench.observers, statistics.median(cpus), min(cpus), max(cpus), udp,
        by_kind or "kinds not counted", commands, commands / bench.size), udp


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of y over x."""
    mean_x = statistics.mean(x for x, _ in points)
    mean_y = statistics.mean(y for _, y in points)
    return (sum((x - mean_x) * (y - mean_y) for x, y in points)
            / sum((x - mean_x) ** 2 for x, _ in points))


def simulate(size: int, loss_percent: int, seconds: float, victims: int) -> str:
    """The production PingNet on the simulated network of the tests (tests/pingnet/simnet.py:
    one task.Clock, in-memory datagrams, FakeRedisStore with the tally script's twin), K = 10:
    `victims` nodes frozen one after another over `seconds` simulated seconds at
    `loss_percent` % random loss; detection (all survivors) and false verdicts."""
    sys.path.insert(0, REPO)
    import random

    from twisted.internet.task import Clock
    from twisted.logger import globalLogPublisher

    from tests.pingnet.simnet import SimCluster

    clock = Clock()
    clock.advance(1_700_000_000.0)
    sim = SimCluster(clock, size)
    sim.net.loss = loss_percent / 100.0
    downs: list[tuple[float, str]] = []

    def watch(event: dict[str, Any]) -> None:
        if event.get("event") == "pingnet_verdict" and event.get("available") is False:
            downs.append((clock.seconds(), str(event.get("peer"))))

    globalLogPublisher.addObserver(watch)
    wall = time.time()
    try:
        sim.start()
        sim.run(2.0, step=0.01)
        start = clock.seconds()
        frozen: dict[str, float] = {}
        detections: list[float] = []
        missed = 0
        order = sorted(sim.nodes)
        random.Random(size).shuffle(order)
        for victim in order[:victims]:
            began = clock.seconds()
            sim.freeze(victim)
            frozen[victim] = began
            survivors = [n for n in sim.nodes if n not in frozen]
            while clock.seconds() - began < 10.0:
                sim.run(0.05, step=0.01)
                if all(sim.nodes[n].peers.is_down(victim) for n in survivors):
                    detections.append(clock.seconds() - began)
                    break
            else:
                missed += 1
            sim.run(max(0.0, began + seconds / victims - clock.seconds()), step=0.01)
        simulated = clock.seconds() - start
        sim.stop()
    finally:
        globalLogPublisher.removeObserver(watch)
    false = sum(1 for when, peer in downs if peer not in frozen or when < frozen[peer])
    return ("simulated N = {}, K = 10, {} % loss, {:.0f} simulated s ({:.0f} s wall): "
            "{} victims, all survivors saw each down after {} s (undetected {}); "
            "{} false verdicts").format(size, loss_percent, simulated, time.time() - wall,
                                        victims, summary(detections), missed, false)


def main() -> None:
    """Run the matrix and print a report."""
    parser = argparse.ArgumentParser(description="ping-net benchmark")
    parser.add_argument("--sizes", default="5,16")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per window")
    parser.add_argument("--skip", default="", help="comma list: kill,stop,idle,cpu,loss,gray,cost")
    parser.add_argument("--no-netns", action="store_true")
    parser.add_argument("--observers", type=int, default=10, help="[ping] observers (K)")
    parser.add_argument("--per-process", type=int, default=1,
                        help="nodes per runner process (victims always run alone)")
    parser.add_argument("--baseline-observers", action="store_true",
                        help="also run the smallest size all-pairs (K = N - 1) as a baseline")
    parser.add_argument("--simulate", default="",
                        help="comma list of sizes to run on the simulated network instead")
    parser.add_argument("--sim-loss", default="1,10", help="loss percentages to simulate")
    parser.add_argument("--sim-seconds", type=float, default=60.0,
                        help="simulated seconds per size and loss")
    parser.add_argument("--sim-victims", type=int, default=3)
    args = parser.parse_args()
    if args.simulate:
        for size in (int(n) for n in args.simulate.split(",")):
            for loss in (int(p) for p in args.sim_loss.split(",")):
                print(simulate(size, loss, args.sim_seconds, args.sim_victims))
                sys.stdout.flush()
        return
    skip = set(filter(None, args.skip.split(",")))
    use_ns = not args.no_netns and os.geteuid() == 0 and shutil.which("nft") is not None
    print("pingnet bench: sizes {} trials {} window {:.0f} s netns {}".format(
        args.sizes, args.trials, args.window, "yes" if use_ns else "no (no loss windows)"))
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [(size, args.observers) for size in sizes]
    if args.baseline_observers:
        runs.insert(0, (sizes[0], sizes[0] - 1))
    sent: list[tuple[int, float]] = []
    for size, observers in runs:
        workdir = tempfile.mkdtemp(prefix="pingnet-bench-")
        with Namespace(use_ns) as ns:
            bench = Bench(size, ns, workdir, observers, per_process=args.per_process)
            try:
                bench.start()
                print("\n== N = {}, K = {}{}{} ==".format(
                    size, observers, " (all pairs)" if observers >= size - 1 else "",
                    "; {} processes, up to {} nodes each (victims alone)".format(
                        len(bench.processes), args.per_process)
                    if args.per_process > 1 else ""))
                for kind in ("kill", "stop"):
                    if kind in skip:
                        continue
                    result = run_trials(bench, kind, args.trials)
                    print("{:<5} detect first {}  all {}  undetected {}/{}".format(
                        kind, summary(result["first"]), summary(result["all"]),
                        result["undetected"], args.trials))
                    if kind == "kill":
                        print("      recovery after restart command {}; after the restarted "
                              "node listened {}".format(summary(result["recovery"]),
                                                        summary(result["recovery_up"])))
                    else:
                        print("      recovery after SIGCONT {}".format(
                            summary(result["recovery"])))
                    sys.stdout.flush()
                if "idle" not in skip:
                    print(window(bench, args.window, "idle"))
                if "cpu" not in skip:
                    print(window(bench, args.window, "2 busy loops", hogs=2))
                if "loss" not in skip and use_ns:
                    print(window(bench, args.window, "10 % packet loss", loss=10))
                    print(window(bench, args.window, "30 % packet loss", loss=30))
                if "gray" not in skip:
                    print("\n".join(gray(bench, args.window)))
                if "cost" not in skip:
                    line, udp = cost(bench, min(args.window, 20.0))
                    print(line)
                    if observers == args.observers:
                        sent.append((size, udp))
                sys.stdout.flush()
            finally:
                bench.stop()
                shutil.rmtree(workdir, ignore_errors=True)
    if len(sent) >= 2:
        print("\ndatagrams sent per node per second over N: {}; slope {:.3f} per node "
              "(goal: flat, <= 4 K / interval = {:.0f})".format(
                  ", ".join("N={} {:.1f}".format(n, u) for n, u in sent), slope(sent),
                  4 * args.observers / 0.5))
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f} on {} cores".format(
        *os.getloadavg(), os.cpu_count()))


if __name__ == "__main__":
    main()
