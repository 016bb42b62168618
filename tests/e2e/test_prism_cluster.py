"""The prism in a real local cluster: SDK flow end to end, bounded memory, TLS."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from stretchfs.chaos.load import PROPAGATION_SECONDS
from stretchfs.devcluster.cluster import LocalCluster
from stretchfs.devcluster.process import decode_json, http_call, http_get_json
from tests.helpers import minimal_config


@pytest.fixture
def cluster(tmp_path) -> Iterator[dict[str, Any]]:
    """A master, two prisms and two stores as real processes; always stopped."""
    local = LocalCluster(str(tmp_path / "cluster"), prisms=2, stores=2, say=lambda _: None)
    try:
        yield local.up(timeout=60)
    finally:
        local.down()


def _call(url: str, body: Any = None, token: str = "", data: bytes | None = None,
          headers: dict[str, str] | None = None, method: str = "POST") -> tuple[int, Any]:
    sent = dict(headers or {})
    if token:
        sent["X-STRETCHFS-Token"] = token
    status, reply = http_call(method, url, body, data=data, headers=sent, timeout=30)
    return status, decode_json(reply)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def _login(prism: str, user: dict[str, str]) -> str:
    code, body = _call(prism + "/user/login", {"username": user["username"],
                                                "password": user["password"]})
    assert code == 200, body
    return body["session"]["token"]


def _multipart(data: bytes, filename: str, ctype: str) -> tuple[bytes, str]:
    boundary = "e2eBoundary0123456789"
    head = ('--{b}\r\nContent-Disposition: form-data; name="title"\r\n\r\nclip\r\n'
            '--{b}\r\nContent-Disposition: form-data; name="file"; filename="{f}"\r\n'
            'Content-Type: {t}\r\n\r\n').format(b=boundary, f=filename, t=ctype).encode()
    tail = "\r\n--{}--\r\n".format(boundary).encode()
    return head + data + tail, "multipart/form-data; boundary=" + boundary


def _vm_hwm_kib(pid: int) -> int:
    with open("/proc/{}/status".format(pid)) as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _wait_for_stores(cluster: dict[str, Any], timeout: float = 20.0) -> None:
    """Until every prism's ping net lists every store as available."""
    import time

    prisms = [n["url"] for n in cluster["nodes"] if n["role"] == "prism"]
    stores = [n["name"] for n in cluster["nodes"] if n["role"] == "store"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_store_available(p, s, cluster["cluster_key"]) for p in prisms for s in stores):
            return
        time.sleep(0.1)
    raise AssertionError("prisms never saw every store")


def _master_call(cluster: dict[str, Any], path: str, body: Any = None) -> tuple[int, Any]:
    master = [n["url"] for n in cluster["nodes"] if n["role"] == "master"][0]
    status, reply = http_call("POST", master + path, body, key=cluster["cluster_key"])
    return status, decode_json(reply)


def _other_user(cluster: dict[str, Any]) -> dict[str, str]:
    """A second user, created on the master with the cluster key."""
    status, user = _master_call(cluster, "/users", {"username": "other-buyer"})
    assert status == 201, user
    return user


def _assert_deactivation_ends_sessions(cluster: dict[str, Any], prisms: list[str],
                                       username: str, token: str) -> None:
    """After the master deactivates a user, its token is refused by every prism within the
    5 s the contract allows (the prisms' session cache time)."""
    import time

    assert all(_call(p + "/user/session/validate", token=token)[0] == 200 for p in prisms)
    assert _master_call(cluster, "/users/{}/deactivate".format(username))[0] == 200
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if all(_call(p + "/user/session/validate", token=token)[0] == 401 for p in prisms):
            return
        time.sleep(0.2)
    raise AssertionError("a deactivated user's session still works on a prism")


def _assert_not_theirs(prism: str, purchase: dict[str, Any], owner_token: str,
                       token: str) -> None:
    """Another user's detail and remove answer as for an unknown token, with no credential
    of the owner in them."""
    unknown = "U" * 64
    for path in ("/content/purchase/detail", "/content/purchase/remove"):
        code, theirs = _call(prism + path, {"token": purchase["token"]}, token=token)
        nobodys = _call(prism + path, {"token": unknown}, token=token)
        assert (code, json.dumps(theirs).replace(purchase["token"], unknown)) == (
            nobodys[0], json.dumps(nobodys[1])), (path, theirs)
        assert owner_token not in json.dumps(theirs)
    assert code == 200 and theirs["count"] == 0


def test_upload_purchase_and_deliver_across_prisms(cluster) -> None:
    """Upload on one prism, purchase on the other, follow the redirect to the bytes; another
    user can neither read nor remove the purchase, and its deactivation ends its session."""
    prisms = [n["url"] for n in cluster["nodes"] if n["role"] == "prism"]
    _wait_for_stores(cluster)
    token = _login(prisms[0], cluster["user"])
    data = os.urandom(200_000)
    sha1 = hashlib.sha1(data).hexdigest()
    body, ctype = _multipart(data, "clip.mp4", "video/mp4")
    code, answer = _call(prisms[0] + "/content/upload", data=body, token=token,
                         headers={"Content-Type": ctype})
    assert code == 200, answer
    assert answer["files"]["file"]["sha1"] == sha1 and answer["files"]["file"]["copies"] == 2
    assert answer["data"] == {"title": "clip"}
    # The second copy's publish reaches the other prism's mirror within the feed's
    # propagation bound; meanwhile it must already know the content (never a 404).
    deadline = time.monotonic() + PROPAGATION_SECONDS
    while True:
        code, detail = _call(prisms[1] + "/content/detail", {"sha1": sha1}, token=token)
        assert code == 200 and detail["count"] >= 1 and detail["ext"] == "mp4", detail
        if detail["count"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert detail["count"] == 2, detail
    code, purchase = _call(prisms[1] + "/content/purchase",
                           {"sha1": sha1, "ext": "mp4", "referrer": []}, token=token)
    assert code == 200, purchase
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open("{}/{}/clip.mp4".format(prisms[0], purchase["token"]), timeout=10)
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        location = exc.headers["Location"]
    parts = urlsplit(location)
    assert "start=0" in parts.query
    stores = {n["url"] for n in cluster["nodes"] if n["role"] == "store"}
    assert "{}://{}".format(parts.scheme, parts.netloc) in stores
    with urllib.request.urlopen(location, timeout=10) as reply:
        assert reply.read() == data
    assert purchase["sessionToken"] == token
    other_user = _other_user(cluster)
    other = _login(prisms[0], other_user)
    _assert_not_theirs(prisms[0], purchase, token, other)
    _assert_deactivation_ends_sessions(cluster, prisms, other_user["username"], other)
    code, detail = _call(prisms[0] + "/content/purchase/detail",
                         {"token": purchase["token"]}, token=token)
    assert code == 200 and detail["hash"] == sha1
    code, removed = _call(prisms[0] + "/content/purchase/remove",
                          {"token": purchase["token"]}, token=token)
    assert code == 200 and removed["count"] == 1


def test_large_upload_keeps_prism_memory_bounded(cluster) -> None:
    """A 192 MiB upload streams through the prism without its peak RSS growing with it."""
    prism = next(n for n in cluster["nodes"] if n["role"] == "prism")
    token = _login(prism["url"], cluster["user"])
    before = _vm_hwm_kib(prism["pid"])
    size = 192 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha1()
    boundary = "bigBoundary42"
    head = ('--{}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n').format(boundary).encode()
    tail = "\r\n--{}--\r\n".format(boundary).encode()
    host = urlsplit(prism["url"])
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    conn.putrequest("POST", "/content/upload")
    conn.putheader("Content-Type", "multipart/form-data; boundary=" + boundary)
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.putheader("X-STRETCHFS-Token", token)
    conn.endheaders()
    conn.send(head)
    for index in range(size // len(block)):
        chunk = block[:-4] + index.to_bytes(4, "big")
        digest.update(chunk)
        conn.send(chunk)
    conn.send(tail)
    reply = conn.getresponse()
    answer = json.loads(reply.read())
    conn.close()
    assert reply.status == 200, answer
    assert answer["files"]["file"]["sha1"] == digest.hexdigest()
    assert answer["files"]["file"]["size"] == size
    grown_mib = (_vm_hwm_kib(prism["pid"]) - before) / 1024
    assert grown_mib < 64, "prism peak RSS grew by {:.0f} MiB".format(grown_mib)


def _self_signed(folder) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_path, cert_path = str(folder / "key.pem"), str(folder / "cert.pem")
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_prism_listens_with_tls_and_gates_readiness(launch, tmp_path, redis_url) -> None:
    """An ssl: endpoint serves HTTPS; without a master the prism stays 503 with the reason."""
    key_path, cert_path = _self_signed(tmp_path)
    text = minimal_config("prism", redis_url=redis_url).replace(
        'listen = "tcp:0:interface=127.0.0.1"',
        'listen = "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}"'.format(
            key_path, cert_path))
    node = launch("prism", text + "\n[ping]\nenabled = false\n")
    context = ssl.create_default_context(cafile=cert_path)
    context.check_hostname = False
    base = "https://127.0.0.1:{}".format(node.port)
    with urllib.request.urlopen(base + "/ping", context=context, timeout=10) as reply:
        assert json.loads(reply.read()) == {"pong": "pong"}
    try:
        urllib.request.urlopen(base + "/health", context=context, timeout=10)
        raise AssertionError("expected 503")
    except urllib.error.HTTPError as exc:
        assert exc.code == 503
        assert "snapshot" in json.loads(exc.read())["error"]
    assert http_get_json(base.replace("https", "http") + "/ping")[0] != 200


def _store_available(prism_url: str, store: str, key: str) -> bool | None:
    status, body = http_get_json(prism_url + "/pingnet/status", key=key)
    for row in (body or {}).get("peers") or []:
        if row.get("name") == store:
            return bool(row.get("available"))
    return None


def test_delivery_skips_a_store_the_ping_net_marked_down(cluster) -> None:
    """A frozen store holding a copy stops being a redirect target once voted down."""
    import signal
    import time

    prism = next(n for n in cluster["nodes"] if n["role"] == "prism")["url"]
    stores = {n["name"]: n for n in cluster["nodes"] if n["role"] == "store"}
    _wait_for_stores(cluster)
    token = _login(prism, cluster["user"])
    data = os.urandom(10_000)
    body, ctype = _multipart(data, "pic.jpg", "image/jpeg")
    code, answer = _call(prism + "/content/upload", data=body, token=token,
                         headers={"Content-Type": ctype})
    assert code == 200 and answer["files"]["file"]["copies"] == 2, answer
    code, purchase = _call(prism + "/content/purchase",
                           {"hash": answer["files"]["file"]["hash"], "ext": "jpg"}, token=token)
    assert code == 200, purchase
    opener = urllib.request.build_opener(_NoRedirect)

    def target() -> str:
        try:
            opener.open("{}/{}/pic.jpg".format(prism, purchase["token"]), timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 302, exc.code
            return urlsplit(exc.headers["Location"]).netloc
        raise AssertionError("expected a redirect")

    frozen = stores["store1"]
    os.kill(frozen["pid"], signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        key = cluster["cluster_key"]
        while _store_available(prism, "store1", key) is not False and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        assert _store_available(prism, "store1", key) is False
        frozen_netloc = urlsplit(frozen["url"]).netloc
        assert all(target() != frozen_netloc for _ in range(20))
    finally:
        os.kill(frozen["pid"], signal.SIGCONT)
