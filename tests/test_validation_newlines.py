"""Validators refuse values with a trailing newline (a `$` anchor would accept them)."""

from __future__ import annotations

import pytest

from stretchfs.errors import InvalidInput
from stretchfs.master import validate
from stretchfs.store.layout import parse_name
from stretchfs.wire import signing

SHA1 = "a" * 40


@pytest.mark.parametrize("check,value", [
    (validate.sha1, SHA1 + "\n"), (validate.extension, "mp4\n"), (validate.peer_name, "s1\n"),
    (validate.token, "A" * 64 + "\n"), (validate.username, "admin\n"),
])
def test_master_validators_refuse_trailing_newline(check, value) -> None:
    """A hash, extension, name, token or username ending in a newline is bad input."""
    with pytest.raises(InvalidInput):
        check(value)


def test_store_names_and_signed_paths_refuse_trailing_newline() -> None:
    """Content names and signed paths are built only from exact hashes and extensions."""
    with pytest.raises(InvalidInput):
        parse_name(SHA1 + ".mp4\n")
    with pytest.raises(ValueError):
        signing.content_path(SHA1, "mp4\n")
    assert signing.content_path(SHA1, "mp4").endswith(SHA1 + ".mp4")
