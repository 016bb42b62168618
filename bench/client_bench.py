"""Client CLI benchmark: `stretchfs upload` against curl, in the same run, same prism.

(a) one large file (--big-mib, default 256): `stretchfs upload FILE` vs
    `curl -F file=@FILE`; MiB/s, median of --rounds alternating rounds.
(b) --small files (default 1000) of 4 KiB: `stretchfs upload --jobs 8` vs
    8 parallel curl processes, each sending its share over one connection
    (`--next`); files/s, median of --rounds alternating rounds.
The client's peak RSS (ru_maxrss of the child, from wait4) is printed for
both, and the CPU seconds per run (median) of the client (user + system,
from wait4) and of the cluster's processes (from /proc/PID/stat): on a small
machine the client's CPU is taken from the prism's. A local cluster (1
prism, 1 store, replicas 1) is started in a temp folder and stopped by its
own PIDs at the end. The stretchfs package is byte-compiled first, as an
installed one is (with PYTHONDONTWRITEBYTECODE set, every run would compile
its modules again: about 0.1 s of CPU that no user pays).

    .venv/bin/python bench/client_bench.py [--big-mib 256] [--small 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)
CLI = [sys.executable, "-m", "stretchfs.cli.main"]


@dataclass
class Run:
    """One timed run: seconds, peak RSS (MiB, the largest process), client and cluster CPU s."""

    seconds: float
    rss: int
    cpu: float
    server_cpu: float


def cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes `pids` have used so far, from /proc."""
    total = 0
    for pid in pids:
        with open("/proc/{}/stat".format(pid)) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def run_parallel(commands: list[list[str]], env: dict[str, str], servers: list[int]) -> Run:
    """Run every command at once to completion; fails loudly on an error."""
    server_before = cpu_of(servers)
    started = time.monotonic()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c in commands]
    peak, cpu = 0, 0.0
    for argv, proc in zip(commands, procs):
        _pid, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("{} failed: {}".format(argv[:3], proc.stderr.read()[-500:]))
        peak = max(peak, usage.ru_maxrss // 1024)
        cpu += usage.ru_utime + usage.ru_stime
    took = time.monotonic() - started
    return Run(took, peak, cpu, cpu_of(servers) - server_before)


def cpu_line(runs: dict[str, list[Run]]) -> str:
    """The median CPU seconds per run, client and cluster, of both tools."""
    return "    CPU s per run (median): client stretchfs {:.2f}, curl {:.2f}; cluster with " \
        "stretchfs {:.2f}, with curl {:.2f}".format(
            *(statistics.median(r.cpu for r in runs[n]) for n in ("stretchfs", "curl")),
            *(statistics.median(r.server_cpu for r in runs[n]) for n in ("stretchfs", "curl")))


def login(prism: str, user: dict[str, str]) -> str:
    """A session token for curl."""
    out = subprocess.run(["curl", "-sS", "-X", "POST", prism + "/user/login", "-H",
                          "Content-Type: application/json", "-d", json.dumps(user)],
                         capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)["session"]["token"]


def curl_upload(prism: str, token: str, paths: list[str]) -> list[str]:
    """One curl process uploading `paths` one request each over one connection."""
    argv = ["curl", "-sS", "--fail", "-o", "/dev/null"]
    for index, path in enumerate(paths):
        if index:
            argv += ["--next", "-sS", "--fail", "-o", "/dev/null"]
        argv += ["-H", "X-STRETCHFS-Token: " + token, "-F", "file=@" + path,
                 prism + "/content/upload"]
    return argv


def main() -> int:
    """Run both measurements and print them with curl's same-run figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=256, help="size of the large file")
    parser.add_argument("--small", type=int, default=1000, help="number of 4 KiB files")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "stretchfs")],
                   check=True, timeout=300)
    folder = tempfile.mkdtemp(prefix="sfs-client-bench-")
    workdir = os.path.join(folder, "cluster")
    up = subprocess.run(CLI + ["dev", "up", "--detach", "--prisms", "1", "--stores", "1",
                               "--workdir", workdir], env=ENV, capture_output=True, text=True,
                        timeout=300)
    if up.returncode != 0:
        raise SystemExit(up.stdout + up.stderr)
    try:
        with open(os.path.join(workdir, "cluster.json")) as handle:
            state = json.load(handle)
        prism, user = state["prism_url"], state["user"]
        servers = [node["pid"] for node in state["nodes"]]
        env = dict(ENV, STRETCHFS_URL=prism, STRETCHFS_USER=user["username"],
                   STRETCHFS_PASSWORD=user["password"],
                   XDG_CONFIG_HOME=os.path.join(folder, "config"))
        token = login(prism, user)
        # Both tools start logged in: curl with a token, stretchfs with its saved session.
        subprocess.run(CLI + ["login"], env=env, check=True, capture_output=True, timeout=60)
        print("client bench: 1 prism, 1 store (replicas 1), {} round(s)".format(args.rounds))

        big: dict[str, list[Run]] = {"stretchfs": [], "curl": []}
        for round_number in range(args.rounds):
            path = os.path.join(folder, "big-{}.bin".format(round_number))
            with open(path, "wb") as handle:
                for _ in range(args.big_mib):
                    handle.write(os.urandom(1024 * 1024))
            for name in (("stretchfs", "curl") if round_number % 2 == 0
                         else ("curl", "stretchfs")):
                # Each tool sends new bytes: the cluster would dedup a repeat.
                with open(path, "r+b") as handle:
                    handle.write(os.urandom(64))
                argv = (CLI + ["upload", path] if name == "stretchfs"
                        else curl_upload(prism, token, [path]))
                big[name].append(run_parallel([argv], env, servers))
            os.unlink(path)
        ours, theirs = (statistics.median(args.big_mib / r.seconds for r in big[n])
                        for n in ("stretchfs", "curl"))
        print("(a) one {} MiB file: stretchfs upload {:.0f} MiB/s (peak RSS {} MiB), "
              "curl -F {:.0f} MiB/s (peak RSS {} MiB): ratio {:.2f}x".format(
                  args.big_mib, ours, max(r.rss for r in big["stretchfs"]), theirs,
                  max(r.rss for r in big["curl"]), ours / theirs))
        print(cpu_line(big))

        small_runs: dict[str, list[Run]] = {"stretchfs": [], "curl": []}
        for round_number in range(args.rounds):
            for name in (("stretchfs", "curl") if round_number % 2 == 0
                         else ("curl", "stretchfs")):
                paths = []
                small = os.path.join(folder, "small-{}-{}".format(name, round_number))
                os.makedirs(small)
                for index in range(args.small):
                    path = os.path.join(small, "{}.bin".format(index))
                    with open(path, "wb") as handle:
                        handle.write(os.urandom(4096))
                    paths.append(path)
                if name == "stretchfs":
                    commands = [CLI + ["upload", "--jobs", "8"] + paths]
                else:
                    commands = [curl_upload(prism, token, share)
                                for share in (paths[i::8] for i in range(8)) if share]
                small_runs[name].append(run_parallel(commands, env, servers))
        ours, theirs = (statistics.median(args.small / r.seconds for r in small_runs[n])
                        for n in ("stretchfs", "curl"))
        print("(b) {} x 4 KiB: stretchfs upload --jobs 8 {:.0f} files/s (peak RSS {} MiB), "
              "8 parallel curl {:.0f} files/s (peak RSS {} MiB each): ratio {:.2f}x".format(
                  args.small, ours, max(r.rss for r in small_runs["stretchfs"]), theirs,
                  max(r.rss for r in small_runs["curl"]), ours / theirs))
        print(cpu_line(small_runs))
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print("(bench process itself: {} MiB)".format(own))
    finally:
        subprocess.run(CLI + ["dev", "down", "--workdir", workdir], env=ENV,
                       capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", folder], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
