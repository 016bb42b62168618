"""scripts/anycount.py: the count of `Any` in role annotations that typecheck.sh prints."""

from __future__ import annotations

import importlib.util
import os

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "anycount.py")
_spec = importlib.util.spec_from_file_location("anycount", SCRIPT)
assert _spec is not None and _spec.loader is not None
anycount = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(anycount)

SOURCE = '''
import typing
from typing import Any, cast
Alias = dict[str, Any]
def f(a: Any, b: dict[str, Any], *rest: typing.Any, **kw: "list[Any]") -> Any:
    x: Any = cast(Any, a)
    return x
class C:
    field: "Any | None" = None
    async def g(self, clock: object) -> None: ...
'''


def test_counts_any_in_parameter_return_and_variable_annotations_only() -> None:
    """Annotations count (nested, dotted and quoted ones too); an alias or a cast does not."""
    assert anycount.count_source(SOURCE) == 7


def test_counts_per_role_and_ignores_other_packages() -> None:
    """Only stretchfs/<role>/ modules count, each under its role."""
    files = [("stretchfs/prism/a.py", "def f(x: Any) -> Any: ..."),
             ("stretchfs/store/b/c.py", "y: Any = 1"),
             ("stretchfs/wire/d.py", "def f(x: Any) -> None: ..."),
             ("stretchfs/errors.py", "z: Any = 1")]
    assert anycount.count_roles(files) == {"master": 0, "prism": 2, "store": 1, "pingnet": 0}


def test_reads_a_commit_of_this_repository() -> None:
    """The count at a commit reads the role modules of that commit from git."""
    root = os.path.join(os.path.dirname(__file__), "..")
    files = dict(anycount.commit_files(root, "HEAD"))
    assert "stretchfs/prism/__init__.py" in files
    assert all(path.split("/")[1] in anycount.ROLES for path in files)


def test_a_checkout_with_compiled_files_is_counted(tmp_path) -> None:
    """Byte-compiled files beside the sources (a second test run) are skipped, not read."""
    role = tmp_path / "stretchfs" / "prism"
    (role / "__pycache__").mkdir(parents=True)
    (role / "api.py").write_text("from typing import Any\ndef f(a: Any) -> None: ...\n")
    (role / "__pycache__" / "api.cpython-311.pyc").write_bytes(b"\xa7\r\r\n\x00\xff")
    assert anycount.count_roles(anycount.checkout_files(str(tmp_path)))["prism"] == 1
