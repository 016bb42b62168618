"""Count the name `Any` in the annotations of role code (master, prism, store, pingnet).

    python scripts/anycount.py [--before COMMIT]

Prints the count in this checkout beside the count at COMMIT (default: 8fbd79f,
the code before issue 13 typed the collaborators), read with `git archive`.
Counted: every `Any` (bare or `typing.Any`) inside a parameter or return
annotation or an annotated assignment, string annotations included; an `Any`
in a type alias or a `cast` is not.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import subprocess
import sys
import tarfile
from typing import Iterable

ROLES = ("master", "prism", "store", "pingnet")
BEFORE = "8fbd79f"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _any_names(node: ast.AST) -> int:
    """The `Any` names in one annotation, looking inside string annotations."""
    count = 0
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id == "Any":
            count += 1
        elif isinstance(sub, ast.Attribute) and sub.attr == "Any":
            count += 1
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            try:
                count += _any_names(ast.parse(sub.value, mode="eval"))
            except SyntaxError:
                pass
    return count


def count_source(source: str) -> int:
    """The `Any` names in the annotations of one module's source."""
    count = 0
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg,
                        args.kwarg):
                if arg is not None and arg.annotation is not None:
                    count += _any_names(arg.annotation)
            if node.returns is not None:
                count += _any_names(node.returns)
        elif isinstance(node, ast.AnnAssign):
            count += _any_names(node.annotation)
    return count


def count_roles(files: Iterable[tuple[str, str]]) -> dict[str, int]:
    """The count per role of `(path, source)` pairs, paths like `stretchfs/prism/api.py`."""
    counts = dict.fromkeys(ROLES, 0)
    for path, source in files:
        parts = path.split("/")
        if len(parts) > 2 and parts[0] == "stretchfs" and parts[1] in counts \
                and path.endswith(".py"):
            counts[parts[1]] += count_source(source)
    return counts


def checkout_files(root: str) -> Iterable[tuple[str, str]]:
    """`(path, source)` of the role modules in the checkout at `root`."""
    for role in ROLES:
        for directory, _dirs, names in os.walk(os.path.join(root, "stretchfs", role)):
            for name in names:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as handle:
                    yield os.path.relpath(path, root).replace(os.sep, "/"), handle.read()


def commit_files(root: str, commit: str) -> Iterable[tuple[str, str]]:
    """`(path, source)` of the role modules at `commit` (CalledProcessError without it)."""
    archive = subprocess.run(
        ["git", "-C", root, "archive", "--format=tar", commit,
         *("stretchfs/" + role for role in ROLES)],
        check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            if handle is not None:
                yield member.name, handle.read().decode("utf-8")


def describe(counts: dict[str, int]) -> str:
    """`total (master n, prism n, ...)`."""
    return "{} ({})".format(sum(counts.values()),
                            ", ".join("{} {}".format(role, n) for role, n in counts.items()))


def main(argv: list[str]) -> int:
    """Print both counts; the one before says why when git cannot read that commit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="commit to compare with")
    args = parser.parse_args(argv)
    print("Any in role annotations: now {}".format(describe(count_roles(checkout_files(ROOT)))))
    try:
        before = describe(count_roles(commit_files(ROOT, args.before)))
    except (OSError, subprocess.CalledProcessError) as exc:
        before = "unknown ({})".format(getattr(exc, "stderr", b"").decode().strip() or exc)
    print("Any in role annotations: at {} {}".format(args.before, before))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
