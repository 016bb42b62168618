"""`stretchfs repair status`: how far re-replication has come (docs/repair.md)."""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from stretchfs.cli.main import master_command


def add_parser(subparsers: Any) -> None:
    """Register `repair` and its subcommands."""
    repair = subparsers.add_parser("repair", help="re-replication of lost copies")
    sub = repair.add_subparsers(dest="repair_command", required=True)
    master_command(sub, "status", show_status,
                   help="the planner, its queue, copies by count, stores down or lost")


async def show_status(client: Any, args: argparse.Namespace, out: TextIO) -> int:
    """Print the repair status; exit 0."""
    status = await client.repair_status()
    planner = status["planner"]
    out.write("planner: {} (token {}){}\n".format(
        planner["owner"] or "none", planner["token"], "" if planner["live"] else ", not live"))
    out.write("replicas: {}  lost after: {:.0f} s  queue: {}\n".format(
        status["replicas"], status["lost_after"], status["queue"]))
    if status["scanned"] is not None:
        counts = "  ".join("{}: {}".format(label, n) for label, n in status["copies"].items())
        out.write("content by counted copies ({} in all, scanned {}): {}\n".format(
            status["hashes"], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(status["scanned"])),
            counts))
    repaired = status["repaired"]
    out.write("repaired: {} copies, {} bytes, {} failed attempts; {} extra copies trimmed\n"
              .format(repaired["copies"], repaired["bytes"], repaired["failures"],
                      repaired["trims"]))
    for name, alone in sorted(status["draining"].items()):
        out.write("store {}: drained, {}\n".format(
            name, "{} hashes still short of copies elsewhere".format(alone) if alone
            else "everything it holds has its copies elsewhere (it can be removed)"))
    for name, record in sorted(status["stores"].items()):
        out.write("store {}: {} since {}\n".format(
            name, record["state"],
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record["since"]))))
    return 0
