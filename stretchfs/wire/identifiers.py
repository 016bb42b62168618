"""The format of every identifier the roles exchange, defined once for all of them.

* content hash: a SHA1 as 40 lowercase hex digits.  Internal routes (master,
  store) accept only that canonical form.  The public prism routes also take
  upper- or mixed-case hex with surrounding blanks (`public_sha1`) and use
  the lowercase form from then on.
* extension: 1-10 lowercase letters or digits.
* node name (prisms, stores, the master): lowercase letters, digits and
  '-', 1-63, not starting with '-'.
* user name: letters, digits, '_', '.', '@', '-', 1-64, starting with a
  letter or digit.
* purchase token and session token: exactly 64 ASCII letters and digits,
  drawn by the master with `new_token`.

A role refuses a malformed identifier itself, without asking another role:
the answer a client gets then does not depend on whether that role is up.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import TypeGuard

SHA1_PATTERN = "[0-9a-f]{40}"
EXT_PATTERN = "[a-z0-9]{1,10}"
TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 64

SHA1_RE = re.compile(r"^{}\Z".format(SHA1_PATTERN))
EXT_RE = re.compile(r"^{}\Z".format(EXT_PATTERN))
NODE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
TOKEN_RE = re.compile(r"^[A-Za-z0-9]{%d}\Z" % TOKEN_LENGTH)


def _matches(pattern: re.Pattern[str], value: object) -> TypeGuard[str]:
    return isinstance(value, str) and pattern.match(value) is not None


def is_sha1(value: object) -> TypeGuard[str]:
    """True for a content hash in its canonical form (40 lowercase hex)."""
    return _matches(SHA1_RE, value)


def public_sha1(value: object) -> str | None:
    """A hash as a client may send it (any case, blanks around) in canonical form, or None."""
    if not isinstance(value, str):
        return None
    canonical = value.strip().lower()
    return canonical if SHA1_RE.match(canonical) else None


def is_extension(value: object) -> TypeGuard[str]:
    """True for a file extension: 1-10 lowercase letters or digits."""
    return _matches(EXT_RE, value)


def is_node_name(value: object) -> TypeGuard[str]:
    """True for a node (peer) name."""
    return _matches(NODE_NAME_RE, value)


def is_username(value: object) -> TypeGuard[str]:
    """True for a user name."""
    return _matches(USERNAME_RE, value)


def is_purchase_token(value: object) -> TypeGuard[str]:
    """True for a purchase token as the master draws them."""
    return _matches(TOKEN_RE, value)


def is_session_token(value: object) -> TypeGuard[str]:
    """True for a session token as the master draws them."""
    return _matches(TOKEN_RE, value)


def new_token() -> str:
    """A fresh purchase or session token: 64 random letters and digits from `secrets`."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))
