"""Internal store routes: exists, download, remove, fetch, stat, health."""

from __future__ import annotations

import json

import pytest

from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.store.publisher import PUBLISH_EVERY_SECONDS
from tests.store.harness import AUTH, FakeMaster, build, request, sha1_of, stop, stub_for

DATA = b"some content bytes" * 500
SHA1 = sha1_of(DATA)
OTHER = "0" * 40


def _with_content(tmp_path, clock, **kwargs):
    service = build(tmp_path, clock, **kwargs)
    stub = stub_for(service)
    assert request(stub, "PUT", "/content/put/{}.jpg".format(SHA1), data=DATA,
                   headers=AUTH)[0] == 201
    return service, stub


def _post(stub, path, body, headers=AUTH):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    code, response_headers, raw = request(stub, "POST", path, data=data, headers=headers)
    return code, response_headers, raw


def test_exists_single_and_bulk(tmp_path, clock) -> None:
    """exists answers {hash: {exists, ext, size}} for one hash (hash or sha1) or a list."""
    _, stub = _with_content(tmp_path, clock)
    code, _, body = _post(stub, "/content/exists", {"sha1": SHA1})
    assert code == 200
    assert json.loads(body) == {SHA1: {"exists": True, "ext": "jpg", "size": len(DATA)}}
    code, _, body = _post(stub, "/content/exists", {"hash": [SHA1, OTHER]})
    assert json.loads(body) == {SHA1: {"exists": True, "ext": "jpg", "size": len(DATA)},
                                OTHER: {"exists": False, "ext": "", "size": 0}}


@pytest.mark.parametrize("path", ["/content/exists", "/content/download", "/content/remove",
                                  "/content/fetch"])
@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", {"hash": "XYZ"}, {"hash": 5},
                                  {"hash": ["../etc/passwd"]}, {}])
def test_bad_bodies_are_400(tmp_path, clock, path: str, body) -> None:
    """Malformed JSON, non-objects, missing or malformed hashes answer 400 and change nothing."""
    master = FakeMaster()
    service, stub = _with_content(tmp_path, clock, master=master)
    before = list(master.changes())
    code, _, raw = _post(stub, path, body)
    assert code == 400, raw
    assert json.loads(raw)["error"]
    assert master.changes() == before
    assert service.content.store.find(SHA1) is not None


@pytest.mark.parametrize("path", ["/content/exists", "/content/download", "/content/remove",
                                  "/content/fetch"])
def test_internal_routes_need_the_cluster_key(tmp_path, clock, path: str) -> None:
    """Every internal route answers 401 without the cluster key."""
    service, stub = _with_content(tmp_path, clock)
    code, _, raw = _post(stub, path, {"hash": SHA1}, headers={})
    assert code == 401 and json.loads(raw)["error"]
    assert service.content.store.find(SHA1) is not None


def test_exists_refuses_too_many_hashes(tmp_path, clock) -> None:
    """More than 10,000 hashes in one exists call is a 400."""
    _, stub = _with_content(tmp_path, clock)
    code, _, _ = _post(stub, "/content/exists", {"hash": [OTHER] * 10_001})
    assert code in (400, 413)


def test_download_streams_the_bytes(tmp_path, clock) -> None:
    """download answers the bytes with the extension header; unknown hashes are 404."""
    _, stub = _with_content(tmp_path, clock)
    code, headers, body = _post(stub, "/content/download", {"hash": SHA1})
    assert code == 200 and body == DATA
    assert headers.getRawHeaders("x-stretchfs-ext") == ["jpg"]
    code, _, body = _post(stub, "/content/download", {"hash": OTHER})
    assert code == 404 and json.loads(body)["error"]


def test_remove_deletes_and_publishes(tmp_path, clock) -> None:
    """remove deletes the file and publishes the removal; removing again still succeeds."""
    master = FakeMaster()
    service, stub = _with_content(tmp_path, clock, master=master)
    code, _, body = _post(stub, "/content/remove", {"hash": SHA1})
    assert code == 200
    assert json.loads(body)["success"] == "File removed"
    assert service.content.store.find(SHA1) is None
    clock.advance(PUBLISH_EVERY_SECONDS)  # a second change within 50 ms waits its turn
    assert master.changes()[-1] == {"op": "remove", "hash": SHA1}
    code, _, body = _post(stub, "/content/remove", {"sha1": SHA1})
    assert code == 200 and json.loads(body)["removed"] == 0


def test_a_body_with_nan_is_refused_and_changes_nothing(tmp_path, clock) -> None:
    """A remove whose body holds NaN answers 400 and the content stays."""
    service, stub = _with_content(tmp_path, clock)
    body = b'{"hash": "' + SHA1.encode() + b'", "note": NaN}'
    code, _, raw = _post(stub, "/content/remove", body)
    assert code == 400 and "NaN" in json.loads(raw)["error"]
    assert service.content.store.find(SHA1) is not None


def _peers_with(name: str, available: bool = True) -> Peers:
    peers = Peers(self_name="store2")
    peers.set_registry([PeerRecord(name=name, role="store", host="source", port=80,
                                   ping_port=0, url="http://store1")])
    if not available:
        peers.set_available(name, False)
    return peers


def test_fetch_copies_from_another_store_and_publishes(tmp_path, clock) -> None:
    """fetch streams a content from another store's /content/download, verifies and publishes."""
    source, source_stub = _with_content(tmp_path, clock)
    master = FakeMaster()
    target = build(tmp_path, clock, master=master, http=source_stub, name="store2",
                   peers=_peers_with("store1"))
    code, _, body = _post(stub_for(target), "/content/fetch", {"hash": SHA1, "from": "store1"})
    assert code == 201, body
    assert json.loads(body)["ext"] == "jpg"
    found = target.content.store.find(SHA1)
    assert found is not None and found.size == len(DATA)
    assert master.changes() == [{"op": "add", "hash": SHA1, "ext": "jpg", "size": len(DATA)}]
    code, _, body = _post(stub_for(target), "/content/fetch", {"hash": SHA1, "from": "store1"})
    assert code == 200 and json.loads(body)["existed"] is True
    stop(source)
    stop(target)


def test_fetch_of_content_the_source_lacks_is_404(tmp_path, clock) -> None:
    """fetch answers 404 when the source store does not hold the content."""
    _, source_stub = _with_content(tmp_path, clock)
    target = build(tmp_path, clock, http=source_stub, name="store2",
                   peers=_peers_with("store1"))
    code, _, _ = _post(stub_for(target), "/content/fetch", {"hash": OTHER, "from": "store1"})
    assert code == 404
    assert target.content.store.find(OTHER) is None


def test_fetch_from_unknown_or_down_store_is_refused(tmp_path, clock) -> None:
    """fetch from an unregistered store is 404, from a store voted down 503, without from 400."""
    _, source_stub = _with_content(tmp_path, clock)
    target = build(tmp_path, clock, http=source_stub, name="store2",
                   peers=_peers_with("store1", available=False))
    stub = stub_for(target)
    assert _post(stub, "/content/fetch", {"hash": SHA1, "from": "nobody"})[0] == 404
    assert _post(stub, "/content/fetch", {"hash": SHA1, "from": "store1"})[0] == 503
    assert _post(stub, "/content/fetch", {"hash": SHA1})[0] == 400
    assert _post(stub, "/content/fetch", {"hash": SHA1, "from": "store1", "ext": "../x"})[0] \
        == 400
    assert target.content.store.find(SHA1) is None


def test_stat_reports_disk_files_and_bytes(tmp_path, clock) -> None:
    """/stat answers disk total/free, file count, bytes served and writable, without a key."""
    _, stub = _with_content(tmp_path, clock)
    code, _, body = request(stub, "GET", "/stat")
    stat = json.loads(body)
    assert code == 200
    assert stat["disk"]["total"] > 0 and stat["disk"]["free"] > 0
    assert stat["files"] == 1
    assert stat["bytes_served"] == 0
    assert stat["writable"] is True


def test_health_and_ping_answer(tmp_path, clock) -> None:
    """/health is 200 with writable once the root is ready, /ping answers pong."""
    _, stub = _with_content(tmp_path, clock)
    code, _, body = request(stub, "GET", "/health")
    assert code == 200 and json.loads(body)["writable"] is True
    assert json.loads(request(stub, "GET", "/ping")[2]) == {"pong": "pong"}


def test_unusable_root_makes_health_503(tmp_path, clock) -> None:
    """A store root that cannot be created keeps /health at 503 with the reason."""
    blocker = tmp_path / "store1"
    blocker.write_text("a file, not a folder")
    service = build(tmp_path, clock)
    code, _, body = request(stub_for(service), "GET", "/health")
    assert code == 503 and "root" in json.loads(body)["error"]


def test_metrics_include_store_counters(tmp_path, clock) -> None:
    """/metrics exports bytes served and the publish backlog."""
    _, stub = _with_content(tmp_path, clock)
    code, _, body = request(stub, "GET", "/metrics")
    assert code == 200
    assert b"stretchfs_store_bytes_served_total" in body
    assert b"stretchfs_store_publish_backlog" in body


def test_mount_check_keeps_an_unmounted_disk_from_looking_empty(tmp_path, clock) -> None:
    """With mount_check, a root that is not a mount point is left untouched: /health 503,
    PUTs refused, and the start-up sync publishes nothing (no mass "removed")."""
    import os

    master = FakeMaster()
    master.rows["store1"] = {SHA1: {"hash": SHA1, "ext": "jpg", "size": len(DATA)}}
    root = tmp_path / "store1"
    root.mkdir()  # an empty mount point whose disk did not mount
    service = build(tmp_path, clock, master=master, store={"mount_check": True})
    stub = stub_for(service)
    code, _, body = request(stub, "GET", "/health")
    assert code == 503 and "mount point" in json.loads(body)["error"]
    code, _, _ = request(stub, "PUT", "/content/put/{}.jpg".format(SHA1), data=DATA,
                         headers=AUTH)
    assert code == 507
    clock.advance(service.config.inventory.interval)
    assert master.changes() == []
    assert os.listdir(root) == []
    stop(service)


def test_store_waits_for_the_root_lock(tmp_path, clock) -> None:
    """While another process holds the root (a hand-run sync), the store stays not ready
    and retries; once released it starts serving."""
    from stretchfs.store.layout import ContentStore

    other = ContentStore(str(tmp_path / "store1"))
    other.prepare()
    held = other.lock()
    service = build(tmp_path, clock)
    stub = stub_for(service)
    code, _, body = request(stub, "GET", "/health")
    assert code == 503 and "locked" in json.loads(body)["error"]
    held.close()
    clock.advance(5)
    code, _, _ = request(stub, "GET", "/health")
    assert code == 200
    stop(service)
