"""The etc/nginx example in front of a real store: nginx verifies signatures on its own."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request

import pytest

from stretchfs.devcluster.nginx import NginxProcess
from stretchfs.devcluster.ports import free_port
from stretchfs.store.nginxconf import read_template, render_store_server
from stretchfs.wire.signing import content_path, delivery_secret, signed_query
from tests.helpers import CLUSTER_KEY, minimal_config

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None and
                                not os.path.exists("/usr/sbin/nginx"),
                                reason="nginx is not installed")


def _fetch(url: str, method: str = "GET", data: bytes | None = None,
           headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_nginx_serves_signed_urls_and_proxies_the_rest(launch, tmp_path) -> None:
    """Through nginx: PUT proxied, signed GET/Range served with ETag=hash, bad/expired URLs 403."""
    root = str(tmp_path / "store-root")
    store = launch("store", minimal_config("store", root=root,
                                           extra="\n[ping]\nenabled = false\n"))
    port = free_port()
    body = render_store_server(read_template(), listen="127.0.0.1:{}".format(port), root=root,
                               secret=delivery_secret(CLUSTER_KEY),
                               upstream="127.0.0.1:{}".format(store.port))
    nginx = NginxProcess(str(tmp_path / "nginx"), body, port)
    nginx.start()
    try:
        base = "http://127.0.0.1:{}".format(port)
        data = os.urandom(200_000)
        sha1 = hashlib.sha1(data).hexdigest()
        code, _, _ = _fetch(base + "/content/put/{}.jpg".format(sha1), "PUT", data,
                            {"Authorization": "Bearer " + CLUSTER_KEY})
        assert code == 201
        path = content_path(sha1, "jpg")
        url = base + path + "?" + signed_query(delivery_secret(CLUSTER_KEY), path,
                                               int(time.time()) + 60)
        code, headers, got = _fetch(url + "&start=0")
        assert code == 200 and got == data
        assert headers["ETag"] == '"{}"'.format(sha1)
        assert headers["Content-Type"] == "image/jpeg"
        code, headers, got = _fetch(url, headers={"Range": "bytes=10-19"})
        assert code == 206 and got == data[10:20]
        assert headers["Content-Range"] == "bytes 10-19/{}".format(len(data))
        assert _fetch(url.replace("md5=", "md5=x"))[0] == 403
        assert _fetch(base + path)[0] == 403
        expired = base + path + "?" + signed_query(delivery_secret(CLUSTER_KEY), path,
                                                   int(time.time()) - 1)
        assert _fetch(expired)[0] == 403
        code, _, _ = _fetch(base + "/stat")
        assert code == 200
        # a copy removed (never served before, so no cached descriptor) is still delivered
        # during [store] remove_grace, for a redirect given before the prisms learned of it
        other = os.urandom(5_000)
        other_sha1 = hashlib.sha1(other).hexdigest()
        assert _fetch(base + "/content/put/{}.jpg".format(other_sha1), "PUT", other,
                      {"Authorization": "Bearer " + CLUSTER_KEY})[0] == 201
        code, _, _ = _fetch(base + "/content/remove", "POST",
                            json.dumps({"hash": other_sha1}).encode(),
                            {"Authorization": "Bearer " + CLUSTER_KEY,
                             "Content-Type": "application/json"})
        assert code == 200
        path = content_path(other_sha1, "jpg")
        code, _, got = _fetch(base + path + "?" + signed_query(
            delivery_secret(CLUSTER_KEY), path, int(time.time()) + 60))
        assert code == 200 and got == other
    finally:
        nginx.stop()
        store.stop()
    assert store.shut_down_cleanly()
