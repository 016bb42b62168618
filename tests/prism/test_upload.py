"""Upload: multipart intake, dedup, placement, failing stores, temp files."""

from __future__ import annotations

import os

from stretchfs.pingnet.peers import PeerRecord
from stretchfs.prism.replicate import Placement, choose_stores
from stretchfs.prism.upload import extension_for
from tests.prism.harness import make_prism, multipart, sha1_of

DATA = b"hello stretchfs " * 1000


def _upload(prism, files, fields=None, **kwargs):
    body, ctype = multipart(fields or {}, files)
    return prism.call("POST", "/content/upload", data=body,
                      headers={"Content-Type": ctype}, **kwargs)


def _tmp_files(prism) -> list[str]:
    return os.listdir(prism.service.api.config.prism.tmp_dir)


def test_upload_answers_the_sdk_shape_and_stores_two_copies(tmp_path) -> None:
    """An upload is PUT to two stores and answered with data, files and copies."""
    prism = make_prism(tmp_path)
    code, body, _ = _upload(prism, {"file": ("movie.mp4", "video/mp4", DATA)}, {"title": "x"})
    assert code == 200, body
    sha1 = sha1_of(DATA)
    assert body["success"] == "File(s) uploaded" and body["data"] == {"title": "x"}
    assert body["files"]["file"] == {"key": "file", "name": "movie.mp4",
                                     "mimetype": "video/mp4", "ext": "mp4", "hash": sha1,
                                     "sha1": sha1, "size": len(DATA), "copies": 2}
    holders = [s for s in prism.stores.values() if sha1 in s.files]
    assert len(holders) == 2 and all(s.files[sha1] == DATA for s in holders)
    assert prism.service.inventory_sync.mirror.get(sha1).ext == "mp4"
    assert _tmp_files(prism) == []
    prism.stop()


def test_upload_dedups_content_that_has_enough_copies(tmp_path) -> None:
    """Uploading content that already has `replicas` copies writes nothing."""
    prism = make_prism(tmp_path)
    assert _upload(prism, {"file": ("a.bin", "application/octet-stream", DATA)})[0] == 200
    puts = sum(s.puts for s in prism.stores.values())
    code, body, _ = _upload(prism, {"file": ("b.bin", "application/octet-stream", DATA)})
    assert code == 200 and body["files"]["file"]["copies"] == 2
    assert sum(s.puts for s in prism.stores.values()) == puts
    assert _tmp_files(prism) == []
    prism.stop()


def test_upload_tops_up_content_with_too_few_copies(tmp_path) -> None:
    """Content with one copy gets one more, on another host."""
    sha1 = sha1_of(DATA)

    def prefill(master):
        master.add_content(sha1, "bin", len(DATA), ["store1"])

    prism = make_prism(tmp_path, prefill=prefill)
    prism.stores["store1"].files[sha1] = DATA
    code, body, _ = _upload(prism, {"file": ("a.bin", "", DATA)})
    assert code == 200 and body["files"]["file"]["copies"] == 2
    assert prism.stores["store1"].puts == 0
    assert sum(s.puts for s in prism.stores.values()) == 1
    prism.stop()


def test_failed_store_is_replaced_by_the_next_candidate(tmp_path) -> None:
    """A store answering an error (or full) is replaced by the next candidate."""
    prism = make_prism(tmp_path)
    prism.stores["store1"].mode = "error"
    prism.stores["store2"].mode = "full"
    code, body, _ = _upload(prism, {"file": ("a.bin", "", DATA)})
    assert code == 200 and body["files"]["file"]["copies"] == 1
    assert sha1_of(DATA) in prism.stores["store3"].files
    prism.stop()


def test_store_down_mid_upload_is_replaced(tmp_path) -> None:
    """A store whose connection fails is replaced by the next candidate."""
    prism = make_prism(tmp_path)
    prism.network.down.add("10.0.0.1")
    code, body, _ = _upload(prism, {"file": ("a.bin", "", DATA)})
    assert code == 200 and body["files"]["file"]["copies"] == 2
    assert sha1_of(DATA) not in prism.stores["store1"].files
    prism.stop()


def test_no_copy_possible_is_an_error_and_removes_temp_files(tmp_path) -> None:
    """When every store fails the upload answers 503 (507 if all are full), temp files gone."""
    prism = make_prism(tmp_path)
    for store in prism.stores.values():
        store.mode = "full"
    code, body, _ = _upload(prism, {"file": ("a.bin", "", DATA)})
    assert code == 507 and "error" in body
    for store in prism.stores.values():
        store.mode = "error"
    code, body, _ = _upload(prism, {"file": ("a.bin", "", DATA)})
    assert code == 503
    assert _tmp_files(prism) == []
    prism.stop()


def test_upload_without_session_is_401_and_stores_nothing(tmp_path) -> None:
    """An upload without a valid session is refused before any store is called."""
    prism = make_prism(tmp_path)
    code, _, _ = _upload(prism, {"file": ("a.bin", "", DATA)}, token=None)
    assert code == 401
    assert sum(s.puts for s in prism.stores.values()) == 0
    prism.stop()


def test_bad_upload_bodies_are_400(tmp_path) -> None:
    """Not multipart, no file part, or a broken multipart body answer 400."""
    prism = make_prism(tmp_path)
    assert prism.call("POST", "/content/upload", {"a": 1})[0] == 400
    assert _upload(prism, {}, {"only": "field"})[0] == 400
    body, ctype = multipart({}, {"file": ("a.bin", "", DATA)})
    code, _, _ = prism.call("POST", "/content/upload", data=body[: len(body) // 2],
                            headers={"Content-Type": ctype})
    assert code == 400
    assert _tmp_files(prism) == []
    assert sum(s.puts for s in prism.stores.values()) == 0
    prism.stop()


def test_upload_over_the_limit_is_413(tmp_path) -> None:
    """A file larger than [prism] max_upload answers 413 and leaves no temp file."""
    prism = make_prism(tmp_path, extra="max_upload = 1000\n")
    code, body, _ = _upload(prism, {"file": ("a.bin", "", DATA)})
    assert code == 413 and "error" in body
    assert _tmp_files(prism) == []
    prism.stop()


def test_several_files_in_one_upload(tmp_path) -> None:
    """Every file part is stored and reported under its field name."""
    prism = make_prism(tmp_path)
    code, body, _ = _upload(prism, {"one": ("a.jpg", "image/jpeg", b"1" * 10),
                                    "two": ("b.png", "", b"2" * 10)})
    assert code == 200
    assert body["files"]["one"]["ext"] == "jpg" and body["files"]["two"]["ext"] == "png"
    prism.stop()


def test_extension_rules() -> None:
    """Extension from the MIME type, else the filename, else bin."""
    assert extension_for("video/mp4", "x.bin") == "mp4"
    assert extension_for("image/jpeg", "") == "jpg"
    assert extension_for("application/octet-stream", "clip.MOV") == "mov"
    assert extension_for("", "noext") == "bin"
    assert extension_for("", "bad.ex/t") == "bin"
    assert extension_for("weird/unknown", "a.webm") == "webm"


def _rec(name: str, host: str, zone: str, site: str = "local") -> PeerRecord:
    return PeerRecord(name=name, role="store", host=host, port=80, ping_port=0, site=site,
                      zone=zone)


def test_placement_prefers_distinct_zones_and_never_shares_a_host() -> None:
    """Copies go to distinct hosts, distinct zones first, own site first."""
    stores = [_rec("s1", "h1", "a"), _rec("s2", "h1", "b"), _rec("s3", "h2", "a"),
              _rec("s4", "h3", "b"), _rec("s5", "h4", "c", site="far")]
    chosen = choose_stores(stores, 2, Placement(), "local")
    assert [c.name for c in chosen] == ["s1", "s4"]
    chosen = choose_stores(stores, 3, Placement(), "local")
    assert len({c.host for c in chosen}) == 3
    assert [c.name for c in chosen] == ["s1", "s4", "s5"]
    same_host = [_rec("s1", "h1", "a"), _rec("s2", "h1", "b")]
    assert len(choose_stores(same_host, 2, Placement(), "local")) == 1


def test_a_failed_copy_does_not_free_a_zone_another_copy_uses() -> None:
    """Releasing a failed store keeps its zone taken while another copy is in it, so the
    spare still goes to a new zone when one is free."""
    placement = Placement()
    holder, failed = _rec("s1", "h1", "a"), _rec("s2", "h2", "a")
    placement.take(holder)
    placement.take(failed)
    placement.release(failed)
    spares = [_rec("s3", "h3", "a"), _rec("s4", "h4", "b")]
    assert [c.name for c in choose_stores(spares, 1, placement, "local")] == ["s4"]


def test_upload_places_copies_on_distinct_hosts(tmp_path) -> None:
    """Two stores on one host never both get a copy of one upload."""
    stores = [("store1", "10.0.0.1", "a"), ("store2", "10.0.0.1", "b"),
              ("store3", "10.0.0.3", "a")]
    prism = make_prism(tmp_path, stores=stores)
    for index in range(4):
        data = DATA + bytes([index])
        code, body, _ = _upload(prism, {"file": ("a.bin", "", data)})
        assert code == 200 and body["files"]["file"]["copies"] == 2
        holders = [name for name, s in prism.stores.items() if sha1_of(data) in s.files]
        assert "store3" in holders and len(holders) == 2
    prism.stop()


def test_too_few_known_stores_triggers_a_registry_refresh(tmp_path) -> None:
    """With no writable store known, the prism asks for a fresh registry before giving up."""
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from tests.helpers import result_of

    clock = Clock()
    asked = []

    def refresh() -> None:
        asked.append(True)
        peers.set_registry(records)

    from tests.prism.fakes import store_peers
    from tests.prism.harness import STORES

    peers = store_peers(STORES)
    records = peers.all()
    peers.set_registry([])
    replicator, _, _, _ = _replicator(STORES, set(), clock=clock, refresh_registry=refresh,
                                      peers=peers)
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    d = Deferred.fromCoroutine(replicator.store("a" * 40, "bin", str(path), 3))
    for _ in range(4):
        clock.advance(0.5)
    assert asked and result_of(d).copies == 2


def _replicator(stores, fail_after, min_copies=1, clock=None, refresh_registry=None,
                peers=None):
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure
    from twisted.web._newclient import ResponseFailed

    from stretchfs.prism.mirror import InventoryMirror
    from stretchfs.prism.replicate import Replicator
    from tests.prism.fakes import store_peers

    peers = peers if peers is not None else store_peers(stores)
    mirror = InventoryMirror()
    calls = []

    class _Client:
        def __init__(self, record):
            self.record = record

        async def put(self, sha1, ext, path, size):
            calls.append(self.record.name)
            if self.record.name in fail_after:
                # The body was half sent when the store's connection dropped.
                raise ResponseFailed([Failure(ConnectionError("connection lost mid-body"))])
            return {"hash": sha1, "ext": ext, "size": size}

    replicator = Replicator(peers=peers, inventory=lambda: mirror, store_client=_Client,
                            replicas=2, min_copies=min_copies, site="local", clock=clock,
                            refresh_registry=refresh_registry)
    return replicator, mirror, calls, Deferred


def test_store_failing_mid_body_is_replaced(tmp_path) -> None:
    """A PUT whose connection drops mid-body counts as failed; the next store is used."""
    from twisted.internet.defer import Deferred

    from tests.helpers import result_of

    replicator, mirror, calls, _ = _replicator(
        [("store1", "h1", "a"), ("store2", "h2", "b"), ("store3", "h3", "c")], {"store1"})
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    stored = result_of(Deferred.fromCoroutine(replicator.store("a" * 40, "bin", str(path), 3)))
    assert stored.copies == 2 and "store1" not in stored.stores
    assert calls[0] == "store1" and len(calls) == 3
    assert set(mirror.get("a" * 40).stores) == set(stored.stores)


def test_min_copies_not_reached_is_503(tmp_path) -> None:
    """With min_copies=2 and only one store succeeding, the upload fails with PeerUnavailable."""
    from twisted.internet.defer import Deferred

    from stretchfs.errors import PeerUnavailable

    replicator, _, _, _ = _replicator([("store1", "h1", "a"), ("store2", "h2", "b")],
                                      {"store2"}, min_copies=2)
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    d = Deferred.fromCoroutine(replicator.store("b" * 40, "bin", str(path), 3))
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(PeerUnavailable)
    assert "1 of the 2" in str(failures[0].value)


def test_partial_store_shortage_refreshes_at_most_once_a_minute(tmp_path) -> None:
    """With fewer stores than replicas the registry is re-read, but not on every upload."""
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from tests.helpers import result_of

    clock = Clock()
    asked = []
    replicator, _, _, _ = _replicator([("store1", "h1", "a")], set(), clock=clock,
                                      refresh_registry=lambda: asked.append(True))
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    for index in range(3):
        d = Deferred.fromCoroutine(replicator.store(str(index) * 40, "bin", str(path), 3))
        for _ in range(4):
            clock.advance(0.5)
        assert result_of(d).copies == 1
    assert len(asked) == 1


def test_client_leaving_during_replication_tries_no_spare_store(tmp_path) -> None:
    """When the uploading client goes away (the handler is cancelled) while copies are
    being written, the cancellation stops the upload: no store is blamed, no spare tried."""
    from twisted.internet.defer import CancelledError, Deferred
    from twisted.internet.task import Clock

    from stretchfs.prism.mirror import InventoryMirror
    from stretchfs.prism.replicate import Replicator
    from tests.prism.fakes import store_peers

    peers = store_peers([("store1", "h1", "a"), ("store2", "h2", "b"), ("store3", "h3", "c")])
    calls: list[str] = []
    pending: list[Deferred] = []

    class _SlowClient:
        def __init__(self, record):
            self.record = record

        def put(self, sha1, ext, path, size):
            calls.append(self.record.name)
            waiting: Deferred = Deferred()
            pending.append(waiting)
            return waiting

    replicator = Replicator(peers=peers, inventory=InventoryMirror, store_client=_SlowClient,
                            replicas=2, min_copies=1, site="local", clock=Clock(),
                            refresh_registry=lambda: None)
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    storing = Deferred.fromCoroutine(replicator.store("a" * 40, "bin", str(path), 3))
    assert len(calls) == 2
    failures: list = []
    storing.addErrback(failures.append)
    storing.cancel()
    assert failures and failures[0].check(CancelledError)
    assert len(calls) == 2  # no spare store was tried


_GOOD = (b"--bb\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n"
         + DATA + b"\r\n")
_CD = b"Content-Disposition: form-data; name=\"f\"; filename=\"b.bin\""


def test_a_body_going_wrong_after_a_good_file_part_stores_nothing(tmp_path) -> None:
    """A complete small file part followed by a broken one (no closing boundary, cut in
    headers, a boundary prefix in the data, garbage or nameless-colon headers, bare LF,
    endless padding, a second file part whose Content-Type lacks a boundary) answers
    4xx and no store gets a PUT, no temp file is left."""
    from stretchfs.prism.upload import MAX_PARTS

    bad = [
        _GOOD + b"--bb\r\n" + _CD + b"\r\n\r\nxyz",
        _GOOD + b"--bb\r\n" + _CD,
        _GOOD + b"--bb\r\n" + _CD + b"\r\n\r\nxyz\r\n--bbz\r\n--bb--",
        _GOOD + b"--bb\r\nno colon\r\n\r\nxyz\r\n--bb--",
        _GOOD + b"--bb\n" + _CD + b"\n\nxyz\n--bb--",
        _GOOD + b"--bb" + b" " * 5000 + b"\r\n" + _CD + b"\r\n\r\nx\r\n--bb--",
        _GOOD + b"".join(b"--bb\r\nContent-Disposition: form-data; name=n%d\r\n\r\n\r\n" % n
                         for n in range(MAX_PARTS)) + b"--bb--",
    ]
    prism = make_prism(tmp_path)
    for body in bad:
        code, answer, _ = prism.call("POST", "/content/upload", data=body, headers={
            "Content-Type": "multipart/form-data; boundary=bb"})
        assert 400 <= code < 500 and "error" in answer, (code, body[-60:])
    for ctype in ("multipart/form-data", 'multipart/form-data; boundary=""',
                  "multipart/mixed; boundary=bb"):
        code, _, _ = prism.call("POST", "/content/upload", data=_GOOD + b"--bb--",
                                headers={"Content-Type": ctype})
        assert code == 400, ctype
    assert sum(s.puts for s in prism.stores.values()) == 0
    assert _tmp_files(prism) == []
    code, _, _ = prism.call("POST", "/content/upload", data=_GOOD + b"--bb--",
                            headers={"Content-Type": 'multipart/form-data; boundary="bb"'})
    assert code == 200 and sum(s.puts for s in prism.stores.values()) > 0
    prism.stop()
