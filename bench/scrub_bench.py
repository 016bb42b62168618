"""Scrub benchmark: the CPU a store's scrub costs at the default `[scrub] rate`.

Fills a temp store root with generated files (`--mix big`: 1 MiB files,
`--mix small`: 4 KiB files, the worst case per byte), then runs a
`ScrubService` with the default settings on the real reactor and its thread
pool for `--seconds` and prints the process's CPU time (user + system) as a
share of one core, against the target (<= 5 % of a core).  The files were
just written, so they are read from the page cache: this measures the CPU,
not the disk.

    .venv/bin/python bench/scrub_bench.py [--mix big|small|both] [--seconds 10]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from stretchfs.config import ScrubSettings  # noqa: E402
from stretchfs.store.layout import ContentStore  # noqa: E402
from stretchfs.store.scrub import ScrubService  # noqa: E402
from stretchfs.store.stats import StoreStats  # noqa: E402
from stretchfs.threads import thread_runner  # noqa: E402

TARGET_SHARE = 0.05
MIXES = {"big": (160, 1024 * 1024), "small": (4000, 4096)}


def _fill(store: ContentStore, count: int, size: int) -> None:
    for _ in range(count):
        data = os.urandom(size)
        sha1 = hashlib.sha1(data).hexdigest()
        os.makedirs(store.folder_for(sha1), exist_ok=True)
        with open(store.path_for(sha1, "bin"), "wb") as handle:
            handle.write(data)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _never_corrupt(sha1: str, move: object) -> bool:
    raise AssertionError("generated files cannot be corrupt")


def run(mix: str, seconds: float) -> bool:
    """Scrub one mix for `seconds` in a fresh process state; whether it met the target."""
    from twisted.internet import reactor

    root = tempfile.mkdtemp(prefix="scrub-bench-")
    try:
        store = ContentStore(root)
        store.prepare()
        _fill(store, *MIXES[mix])
        settings = ScrubSettings()
        stats = StoreStats()
        scrub = ScrubService(store, _never_corrupt, clock=reactor,
                             run_blocking=thread_runner(reactor), rate=settings.rate,
                             period=settings.period, stats=stats, ready=lambda: True)
        began: list[float] = []

        def start() -> None:
            began.append(_cpu_seconds())
            scrub.startService()

        def finish() -> None:
            scrub.stopService()
            reactor.stop()

        reactor.callWhenRunning(start)
        reactor.callLater(seconds, finish)
        reactor.run()
        share = (_cpu_seconds() - began[0]) / seconds
        ok = share <= TARGET_SHARE
        print("scrub {:5s} at {:.0f} MiB/s: {:5.1f} % of a core over {:.0f} s, {} files, "
              "{:.1f} MiB (target <= {:.0f} %) {}".format(
                  mix, settings.rate / 2**20, 100 * share, seconds, stats.scrubbed_files,
                  stats.scrubbed_bytes / 2**20, 100 * TARGET_SHARE, "OK" if ok else "BELOW"))
        return ok
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    """Run the chosen mix (each in its own process: a reactor runs once)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mix", choices=["big", "small", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.mix != "both":
        return 0 if run(args.mix, args.seconds) else 1
    import subprocess

    codes = [subprocess.call([sys.executable, __file__, "--mix", mix, "--seconds",
                              str(args.seconds)]) for mix in ("big", "small")]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
