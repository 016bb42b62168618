"""Entry point of the `stretchfs` command."""

from __future__ import annotations

import argparse
import sys

from stretchfs import __version__
from stretchfs.cli import chaos, content, dev, inventory, peers, purchases, users
from stretchfs.master.cliconn import add_master_arguments


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="stretchfs", description="StretchFS cluster tools")
    parser.add_argument("--version", action="version", version="stretchfs " + __version__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    dev.add_parser(subparsers)
    users.add_parser(subparsers)
    content.add_parsers(subparsers, purchases.run_prune, add_master_arguments)
    peers.add_parser(subparsers)
    inventory.add_parser(subparsers)
    chaos.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
