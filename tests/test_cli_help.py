"""Every command-line option of the `stretchfs` tools explains itself in --help."""

from __future__ import annotations

import argparse
from typing import Iterator

from stretchfs.cli.main import build_parser
from stretchfs.store.nginxconf import build_parser as nginx_parser


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + " " + name)
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


def _undocumented(parser: argparse.ArgumentParser, prog: str) -> list[str]:
    return ["{}: {}".format(path, "/".join(action.option_strings) or action.dest)
            for path, action in _walk(parser, prog) if not action.help]


def test_every_stretchfs_option_and_argument_has_help_text() -> None:
    """`stretchfs ... --help` describes every option and positional argument."""
    assert _undocumented(build_parser(), "stretchfs") == []


def test_every_nginxconf_option_has_help_text() -> None:
    """`python -m stretchfs.store.nginxconf --help` describes every option."""
    assert _undocumented(nginx_parser(), "nginxconf") == []


def test_each_command_is_found_by_its_own_module() -> None:
    """Every command parses with only its own module registered (as `main` builds it)."""
    from stretchfs.cli.main import COMMANDS

    for command in COMMANDS:
        parser = build_parser(command)
        choices = next(a for a in parser._actions
                       if isinstance(a, argparse._SubParsersAction)).choices
        assert command in choices
    assert set(next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices) == set(COMMANDS)
