"""Signed delivery URLs: made by prisms, checked by stores or by nginx alone.

The scheme is nginx's `secure_link` module, so nginx in front of a store can
verify a URL without any Python:

    secure_link     $arg_md5,$arg_expires;
    secure_link_md5 "$secure_link_expires$uri <delivery secret>";

signature = base64url(MD5(expires + path + " " + secret)), no padding.  The
delivery secret is derived from the cluster key (HMAC-SHA256 with a fixed
context), so nginx never holds the cluster key itself.  See
docs/delivery-signing.md for the trade-off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from stretchfs.wire.identifiers import is_extension, is_sha1

DELIVERY_CONTEXT = b"stretchfs delivery-url secret v1"


def delivery_secret(cluster_key: str) -> str:
    """The secret that signs delivery URLs, derived from the cluster key."""
    return hmac.new(cluster_key.encode("utf-8"), DELIVERY_CONTEXT, hashlib.sha256).hexdigest()


def content_path(sha1: str, ext: str) -> str:
    """URL path (and path under the store root) of a content: /content/ab/cd/<sha1>.<ext>."""
    if not is_sha1(sha1) or not is_extension(ext):
        raise ValueError("bad hash or extension")
    return "/content/{}/{}/{}.{}".format(sha1[:2], sha1[2:4], sha1, ext)


def sign(secret: str, path: str, expires: int) -> str:
    """The signature of `path` valid until `expires` (epoch seconds)."""
    digest = hashlib.md5("{}{} {}".format(int(expires), path, secret).encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signed_query(secret: str, path: str, expires: int) -> str:
    """The query string `md5=...&expires=...` that signs `path`."""
    return "md5={}&expires={}".format(sign(secret, path, expires), int(expires))


def verify(secret: str, path: str, expires: str | int, signature: str, now: float) -> bool:
    """True when `signature` signs `path` until `expires` and that is not past."""
    if not isinstance(expires, int) and not (isinstance(expires, str) and expires.isascii()
                                             and expires.isdigit() and len(expires) <= 12):
        return False
    deadline = int(expires)
    if deadline < now:
        return False
    expected = sign(secret, path, deadline).encode("ascii")
    return hmac.compare_digest(expected, (signature or "").encode("utf-8", "replace"))
