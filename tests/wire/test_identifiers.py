"""Identifier formats shared by every role (stretchfs/wire/identifiers.py)."""

from __future__ import annotations

import pytest

from stretchfs.wire import identifiers as ids

SHA1 = "0123456789abcdef0123456789abcdef01234567"


def test_tokens_drawn_by_the_master_pass_both_token_checks() -> None:
    """A freshly drawn token is a valid purchase token and a valid session token."""
    tokens = {ids.new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(ids.is_purchase_token(t) and ids.is_session_token(t) for t in tokens)


@pytest.mark.parametrize("value", ["a" * 63, "a" * 65, "a" * 16, "a" * 128, "a" * 63 + "-",
                                   "a" * 63 + "_", "a" * 64 + "\n", "", None, 64, b"a" * 64])
def test_anything_but_64_letters_and_digits_is_no_token(value) -> None:
    """Tokens are exactly 64 ASCII letters and digits; other lengths, symbols, types fail."""
    assert not ids.is_purchase_token(value) and not ids.is_session_token(value)


def test_hash_is_canonical_lowercase_internally_and_any_case_publicly() -> None:
    """Internal checks take only lowercase hex; the public form is lowercased and trimmed."""
    assert ids.is_sha1(SHA1)
    assert not ids.is_sha1(SHA1.upper()) and not ids.is_sha1(SHA1 + "\n")
    assert ids.public_sha1(" " + SHA1.upper() + " ") == SHA1
    for bad in (SHA1[:-1], SHA1 + "0", "g" * 40, None, 40):
        assert not ids.is_sha1(bad) and ids.public_sha1(bad) is None


def test_extension_node_and_user_names() -> None:
    """Extensions, node names and user names accept their documented alphabets only."""
    assert ids.is_extension("mp4") and ids.is_extension("a" * 10)
    assert not any(ids.is_extension(v) for v in ("", "MP4", "a" * 11, "m.4", "mp4\n", None))
    assert ids.is_node_name("store-1") and ids.is_node_name("a" * 63)
    assert not any(ids.is_node_name(v) for v in ("-a", "Store", "a" * 64, "a_b", "", None))
    assert ids.is_username("Alice.B@x-y_z") and ids.is_username("a" * 64)
    assert not any(ids.is_username(v) for v in (".a", "a" * 65, "a b", "", None))
