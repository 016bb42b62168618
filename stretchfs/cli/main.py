"""Entry point of the `stretchfs` command.

Each command's module is imported only when that command runs (or for
`--help`), so `stretchfs upload` does not pay for loading Twisted and the
local-cluster tools.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from typing import Any, Callable

from stretchfs import __version__

# command -> the stretchfs.cli module registering it (content registers several).
COMMANDS = {"dev": "dev", "user": "users", "peer": "peers", "inventory": "inventory",
            "repair": "repair", "chaos": "chaos", "login": "content", "logout": "content",
            "upload": "content", "download": "content", "purchase": "content",
            "detail": "content"}


def master_command(subparsers: Any, name: str, command: Any, **kwargs: Any) -> Any:
    """Register subcommand `name`, run as `command` against the master (`--config`,
    `--master`, `--ca-file` say which); returns its parser."""
    from stretchfs.master.cliconn import add_master_arguments, run_against_master

    parser = subparsers.add_parser(name, **kwargs)
    add_master_arguments(parser)
    parser.set_defaults(func=functools.partial(run_against_master, command))
    return parser


def _register_content(subparsers: Any, command: str | None) -> None:
    from stretchfs.cli import content

    if command not in (None, "purchase"):  # a client command loads no master code
        content.add_parsers(subparsers, only=command)
        return
    from stretchfs.cli import purchases
    from stretchfs.master.cliconn import add_master_arguments, run_against_master

    content.add_parsers(subparsers, functools.partial(run_against_master,
                                                      purchases.prune_purchases),
                        add_master_arguments, only=command)


def _registrar(module: str, command: str | None) -> Callable[[Any], None]:
    if module == "content":
        return functools.partial(_register_content, command=command)
    return importlib.import_module("stretchfs.cli." + module).add_parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: with `command`, only the module that registers it; else all."""
    parser = argparse.ArgumentParser(prog="stretchfs", description="StretchFS cluster tools")
    parser.add_argument("--version", action="version", version="stretchfs " + __version__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(
        COMMANDS.values()))
    for module in modules:
        _registrar(module, command)(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
