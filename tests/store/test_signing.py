"""Delivery URL signing: the nginx secure_link scheme, keyed by a derived secret."""

from __future__ import annotations

import base64
import hashlib

import pytest

from stretchfs.wire.signing import content_path, delivery_secret, sign, signed_query, verify

SHA1 = "a03f181dc7dedcfb577511149b8844711efdb04f"


def test_signature_is_nginx_secure_link_md5() -> None:
    """sign() is base64url(MD5(expires + path + " " + secret)) without padding, as nginx checks."""
    path = content_path(SHA1, "mp4")
    expected = base64.urlsafe_b64encode(hashlib.md5(
        "1700000000{} s3cret".format(path).encode()).digest()).rstrip(b"=").decode()
    assert sign("s3cret", path, 1700000000) == expected
    assert signed_query("s3cret", path, 1700000000) == "md5={}&expires=1700000000".format(
        expected)


def test_verify_accepts_until_expiry_only() -> None:
    """A signature verifies up to its expiry and not after; other paths never verify."""
    path = content_path(SHA1, "mp4")
    signature = sign("k", path, 1000)
    assert verify("k", path, "1000", signature, now=999.5)
    assert not verify("k", path, "1000", signature, now=1000.5)
    assert not verify("k", content_path(SHA1, "jpg"), "1000", signature, now=0)
    assert not verify("other", path, "1000", signature, now=0)
    assert not verify("k", path, "soon", signature, now=0)
    assert not verify("k", path, "1000", "", now=0)


def test_delivery_secret_is_derived_not_the_cluster_key() -> None:
    """The delivery secret differs from the cluster key and is stable for one key."""
    secret = delivery_secret("cluster-key-0123456789")
    assert secret == delivery_secret("cluster-key-0123456789")
    assert "cluster-key" not in secret and len(secret) == 64
    assert secret != delivery_secret("cluster-key-0123456780")


@pytest.mark.parametrize("sha1,ext", [(SHA1.upper(), "mp4"), (SHA1[:39], "mp4"),
                                      (SHA1, "../x"), (SHA1, ""), (SHA1, "a" * 11)])
def test_content_path_refuses_bad_ids(sha1: str, ext: str) -> None:
    """content_path() refuses anything but 40 lowercase hex and [a-z0-9]{1,10}."""
    with pytest.raises(ValueError):
        content_path(sha1, ext)


def test_content_path_layout() -> None:
    """content_path() is /content/ab/cd/<sha1>.<ext>."""
    assert content_path(SHA1, "txt") == "/content/a0/3f/{}.txt".format(SHA1)
