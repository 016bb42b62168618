"""`stretchfs chaos <scenario>|all --workdir DIR`: failure scenarios on a local cluster."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stretchfs.chaos.scenarios import SCENARIOS, Options, Report


def add_parser(subparsers: Any) -> None:
    """Register `chaos`."""
    chaos = subparsers.add_parser(
        "chaos", help="run failure scenarios against a cluster from `stretchfs dev up --detach`")
    chaos.add_argument("scenario", choices=list(SCENARIOS) + ["all"],
                       help="the failure to cause, or all of them in turn")
    chaos.add_argument("--workdir", default="./.stretchfs-dev",
                       help="the workdir of the running `stretchfs dev up --detach` cluster")
    chaos.add_argument("--seed-files", type=int, default=Options.seed_files,
                       help="files uploaded before the failure (default %(default)s)")
    chaos.add_argument("--threads", type=int, default=Options.threads,
                       help="concurrent load clients during the failure (default %(default)s)")
    chaos.add_argument("--master-down", type=float, default=Options.master_down_seconds,
                       help="seconds the master stays down (master-down)")
    chaos.add_argument("--redis-down", type=float, default=Options.redis_down_seconds,
                       help="seconds the cluster Redis stays down (redis-down)")
    chaos.add_argument("--repair-seconds", type=float, default=Options.repair_seconds,
                       help="seconds after lost_after within which a lost store's content must "
                       "be repaired (store-lost), or a drained store's be copied (drain)")
    chaos.add_argument("--json", action="store_true", help="print the reports as JSON")
    chaos.set_defaults(func=run_chaos)


def format_table(reports: list[Report]) -> str:
    """The reports as an aligned text table."""
    lines = ["{:<16} {:>9} {:>7} {:>10} {:>10}  {}".format(
        "scenario", "requests", "failed", "detection", "data lost", "result")]
    for report in reports:
        detection = ("{:.2f} s".format(report.detection_seconds)
                     if report.detection_seconds is not None else "-")
        lines.append("{:<16} {:>9} {:>7} {:>10} {:>10}  {}".format(
            report.scenario, report.requests, sum(report.failed.values()), detection,
            report.data_lost, "ok" if report.ok else "FAILED"))
        for note in report.notes:
            lines.append("    " + note)
    return "\n".join(lines)


def run_chaos(args: argparse.Namespace) -> int:
    """Run one scenario or all; exit 1 if any broke a promise."""
    from stretchfs.chaos.cluster import ClusterHandle  # Twisted: only when chaos runs

    handle = ClusterHandle(args.workdir)
    options = Options(seed_files=args.seed_files, threads=args.threads,
                      master_down_seconds=args.master_down,
                      redis_down_seconds=args.redis_down, repair_seconds=args.repair_seconds)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    reports = []
    for name in names:
        print("running {} ...".format(name), flush=True)
        reports.append(SCENARIOS[name](handle, options))
    if args.json:
        print(json.dumps([r.as_row() for r in reports], indent=2))
    else:
        print(format_table(reports))
    return 0 if all(r.ok for r in reports) else 1
