"""Client CLI benchmark: `stretchfs upload` against curl, in the same run, same prism.

(a) one large file (--big-mib, default 256): `stretchfs upload FILE` vs
    `curl -F file=@FILE`; MiB/s, median of --rounds alternating rounds.
(b) --small files (default 1000) of 4 KiB: `stretchfs upload --jobs 8` vs
    8 parallel curl processes, each sending its share over one connection
    (`--next`); files/s, median of --rounds alternating rounds.
The client's peak RSS (ru_maxrss of the child, from wait4) is printed for
both. A local cluster (1 prism, 1 store, replicas 1) is started in a temp
folder and stopped by its own PIDs at the end.

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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)
CLI = [sys.executable, "-m", "stretchfs.cli.main"]


def run_timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run `argv` to completion: (seconds, peak RSS in MiB); fails loudly on an error."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    took = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit("{} failed ({}): {}".format(argv[:3], proc.returncode,
                                                      proc.stderr.read()[-500:]))
    return took, usage.ru_maxrss // 1024


def run_parallel(commands: list[list[str]], env: dict[str, str]) -> tuple[float, int]:
    """Run every command at once: (seconds until all ended, largest peak RSS in MiB)."""
    started = time.monotonic()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c in commands]
    peak = 0
    for proc in procs:
        _pid, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("curl failed: {}".format(proc.stderr.read()[-500:]))
        peak = max(peak, usage.ru_maxrss // 1024)
    return time.monotonic() - started, peak


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
        env = dict(ENV, STRETCHFS_URL=prism, STRETCHFS_USER=user["username"],
                   STRETCHFS_PASSWORD=user["password"],
                   XDG_CONFIG_HOME=os.path.join(folder, "config"))
        token = login(prism, user)
        # Both tools start logged in: curl with a token, stretchfs with its saved session.
        subprocess.run(CLI + ["login"], env=env, check=True, capture_output=True, timeout=60)
        print("client bench: 1 prism, 1 store (replicas 1), {} round(s)".format(args.rounds))

        big_rates: dict[str, list[float]] = {"stretchfs": [], "curl": []}
        big_rss: dict[str, int] = {"stretchfs": 0, "curl": 0}
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
                took, rss = run_timed(argv, env)
                big_rates[name].append(args.big_mib / took)
                big_rss[name] = max(big_rss[name], rss)
            os.unlink(path)
        ours, theirs = (statistics.median(big_rates[n]) for n in ("stretchfs", "curl"))
        print("(a) one {} MiB file: stretchfs upload {:.0f} MiB/s (peak RSS {} MiB), "
              "curl -F {:.0f} MiB/s (peak RSS {} MiB): ratio {:.2f}x".format(
                  args.big_mib, ours, big_rss["stretchfs"], theirs, big_rss["curl"],
                  ours / theirs))

        small_rates: dict[str, list[float]] = {"stretchfs": [], "curl": []}
        small_rss: dict[str, int] = {"stretchfs": 0, "curl": 0}
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
                    took, rss = run_timed(CLI + ["upload", "--jobs", "8"] + paths, env)
                else:
                    shares = [paths[i::8] for i in range(8)]
                    took, rss = run_parallel([curl_upload(prism, token, share)
                                              for share in shares if share], env)
                small_rates[name].append(args.small / took)
                small_rss[name] = max(small_rss[name], rss)
        ours, theirs = (statistics.median(small_rates[n]) for n in ("stretchfs", "curl"))
        print("(b) {} x 4 KiB: stretchfs upload --jobs 8 {:.0f} files/s (peak RSS {} MiB), "
              "8 parallel curl {:.0f} files/s (peak RSS {} MiB each): ratio {:.2f}x".format(
                  args.small, ours, small_rss["stretchfs"], theirs, small_rss["curl"],
                  ours / theirs))
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print("(bench process itself: {} MiB)".format(own))
    finally:
        subprocess.run(CLI + ["dev", "down", "--workdir", workdir], env=ENV,
                       capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", folder], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
