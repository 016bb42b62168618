"""The layout of docs/architecture.md: no role imports another role, nothing imports upward."""

from __future__ import annotations

import ast
import os
from collections import defaultdict

import pytest

# Lowest layer first.  A module may import its own package and any package of a
# lower layer; the three roles are siblings and never import each other.
LAYERS: list[set[str]] = [
    {"errors", "exitcodes", "health", "logs", "metrics", "periodic", "threads",
     "wire.identifiers", "client"},
    {"config", "redisstore", "redishealth", "web", "roles"},
    {"wire"},
    {"pingnet", "tapbase"},
    {"master", "prism", "store"},
    {"devcluster"},
    {"chaos"},
    {"cli"},
]
ROLES = {"master", "prism", "store"}
PACKAGE_ROOT = os.path.join(os.path.dirname(__file__), "..", "stretchfs")


def unit_of(module: str) -> str:
    """The layer entry a dotted module (without `stretchfs.`) belongs to: the longest match."""
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        candidate = ".".join(parts[:length])
        if any(candidate in layer for layer in LAYERS):
            return candidate
    raise KeyError(module)


def layer_of(unit: str) -> int:
    return next(index for index, layer in enumerate(LAYERS) if unit in layer)


def package_of(unit: str) -> str:
    return unit.split(".")[0]


def is_module(name: str) -> bool:
    """Whether `stretchfs.<name>` is a module or package (not a name like __version__)."""
    path = os.path.join(PACKAGE_ROOT, name)
    return os.path.isdir(path) or os.path.isfile(path + ".py")


def stretchfs_imports() -> dict[str, set[str]]:
    """Every module of stretchfs/ and the stretchfs modules it imports (without the prefix)."""
    found: dict[str, set[str]] = {}
    for directory, _dirs, files in os.walk(PACKAGE_ROOT):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, PACKAGE_ROOT)[:-3].replace(os.sep, ".")
            module = relative[: -len(".__init__")] if relative.endswith("__init__") else relative
            is_package = name == "__init__.py"
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), path)
            targets: set[str] = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = module.split(".")
                        base = base if is_package else base[:-1]
                        base = base[: len(base) - (node.level - 1)]
                        names = [".".join(base + ([node.module] if node.module else []))]
                        names = ["stretchfs." + n if n else "stretchfs" for n in names]
                    else:
                        names = [node.module or ""]
                    if names == ["stretchfs"]:  # `from stretchfs import errors` (or __version__)
                        names = ["stretchfs." + alias.name for alias in node.names
                                 if is_module(alias.name)]
                else:
                    continue
                targets.update(n[len("stretchfs."):] for n in names if n.startswith("stretchfs."))
            found[module] = targets
    return found


IMPORTS = stretchfs_imports()


def violations(imports: dict[str, set[str]]) -> list[str]:
    """Each import that breaks the layering, as `importer -> imported (why)`."""
    wrong = []
    for module, targets in sorted(imports.items()):
        if module == "":
            continue
        source = unit_of(module)
        for target in sorted(targets):
            imported = unit_of(target)
            if package_of(imported) == package_of(source):
                continue
            if source in ROLES and imported in ROLES:
                wrong.append("{} -> {} (a role imports another role)".format(module, target))
            elif layer_of(imported) > layer_of(source):
                wrong.append("{} -> {} (imports upward)".format(module, target))
    return wrong


def test_every_module_has_a_layer() -> None:
    """A new top-level module or package must be placed in LAYERS (and docs/architecture.md)."""
    unplaced = []
    for module in IMPORTS:
        if module:
            try:
                unit_of(module)
            except KeyError:
                unplaced.append(module)
    assert unplaced == []


def test_no_role_imports_another_role_and_nothing_imports_upward() -> None:
    """The import graph of stretchfs/ follows docs/architecture.md."""
    assert violations(IMPORTS) == []


def test_the_rule_catches_a_role_importing_a_role_and_an_upward_import() -> None:
    """The checker itself: a prism importing the store, and the wire importing the master."""
    fake = {"prism.api": {"store.layout"}, "wire.http": {"master.keys"},
            "store.api": {"wire.store", "pingnet.status"}}
    assert violations(fake) == [
        "prism.api -> store.layout (a role imports another role)",
        "wire.http -> master.keys (imports upward)",
    ]


def test_no_import_cycles_between_packages() -> None:
    """Packages (and top-level modules) form a directed acyclic graph."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in IMPORTS.items():
        if not module:
            continue
        for target in targets:
            if target and package_of(target) != package_of(module):
                graph[package_of(module)].add(package_of(target))
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(path + [node, nxt])
                return True
            if nxt not in state and visit(nxt, path + [node]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if node not in state and visit(node, []):
            break
    assert cycle == []


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_package_holds_code_of_that_role_only(role: str) -> None:
    """Nothing in a role package is imported by another role (shared code belongs in wire/)."""
    users = sorted(module for module, targets in IMPORTS.items()
                   if module and unit_of(module) in ROLES and unit_of(module) != role
                   and any(t.split(".")[0] == role for t in targets))
    assert users == []
