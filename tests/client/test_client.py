"""The Python client against the real prism app in memory (and a store stand-in)."""

from __future__ import annotations

import hashlib
import io
import json

import httpx
import pytest

from stretchfs.client import Client, IntegrityError, NotFound, Unauthorized, Unavailable
from tests.client.memory import PrismTransport, StoreStandIn
from tests.prism.harness import make_prism

DATA = b"stretchfs client " * 4096


def _client(prism, **kwargs) -> Client:
    kwargs.setdefault("sleep", lambda seconds: None)
    return Client("http://prism", "admin", "secret", transport=PrismTransport(prism), **kwargs)


def test_upload_streams_a_file_object_and_reports_progress(tmp_path) -> None:
    """An upload logs in, sends the bytes, checks the SHA1 and reports progress to the end."""
    prism = make_prism(tmp_path)
    seen: list[tuple[int, int | None]] = []
    data = DATA * 40  # several read chunks
    with _client(prism) as client:
        content = client.upload(io.BytesIO(data), name="a.txt",
                                progress=lambda done, total: seen.append((done, total)))
    assert content.hash == hashlib.sha1(data).hexdigest()
    assert (content.size, content.copies, content.ext) == (len(data), 2, "txt")
    assert seen[-1] == (len(data), len(data)) and len(seen) > 1
    prism.stop()


def test_upload_from_a_path_names_the_file_after_it(tmp_path) -> None:
    """Uploading a path sends the file's own name and extension."""
    prism = make_prism(tmp_path)
    path = tmp_path / "clip.mp4"
    path.write_bytes(DATA)
    with _client(prism) as client:
        content = client.upload(str(path))
    assert (content.name, content.ext) == ("clip.mp4", "mp4")
    prism.stop()


def test_detail_exists_and_not_found(tmp_path) -> None:
    """detail of an unknown hash raises NotFound; exists answers exists=False instead."""
    prism = make_prism(tmp_path)
    unknown = "0" * 40
    with _client(prism) as client:
        sha1 = client.upload(io.BytesIO(DATA), name="a.bin").hash
        record = client.detail(sha1)
        with pytest.raises(NotFound):
            client.detail(unknown)
        both = client.exists([sha1, unknown])
    assert record.exists and record.count == 2 and len(record.stores) == 2
    assert both[sha1].exists and not both[unknown].exists
    prism.stop()


def test_purchase_detail_remove_and_its_download_link(tmp_path) -> None:
    """A purchase is found by its buyer, redirects its link to a store, and can be removed."""
    prism = make_prism(tmp_path)
    with _client(prism) as client:
        sha1 = client.upload(io.BytesIO(DATA), name="a.txt").hash
        bought = client.purchase(sha1, "txt", life=600)
        assert client.purchase_detail(bought.token).hash == sha1
        link = client.download_url(bought, "a file.txt")
        assert link == "http://prism/{}/a%20file.txt".format(bought.token)
        redirect = client._http.get(link)
        assert redirect.status_code == 302
        assert sha1 in redirect.headers["location"]
        assert client.purchase_remove(bought.token) == 1
        with pytest.raises(NotFound):
            client.purchase_detail(bought.token)
    prism.stop()


def test_wrong_password_is_unauthorized(tmp_path) -> None:
    """Bad credentials raise Unauthorized with the server's message."""
    prism = make_prism(tmp_path)
    client = Client("http://prism", "admin", "wrong", transport=PrismTransport(prism))
    with pytest.raises(Unauthorized, match="invalid username or password"):
        client.detail("0" * 40)
    prism.stop()


def test_an_expired_session_is_renewed_once(tmp_path) -> None:
    """A call whose session the master no longer knows logs in again and succeeds."""
    prism = make_prism(tmp_path)
    with _client(prism) as client:
        first = client.login().token
        prism.master.sessions.pop(first)
        prism.pump(60)  # past the prism's session cache
        sha1 = client.upload(io.BytesIO(DATA), name="a.bin").hash
        assert client.session is not None and client.session.token != first
        assert client.detail(sha1).exists
    prism.stop()


def _scripted(statuses: list[int], body: dict) -> tuple[httpx.MockTransport, list[int]]:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        status = statuses[min(len(calls), len(statuses)) - 1]
        if status == 503:
            return httpx.Response(503, json={"error": "no store available"})
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handler), calls


def test_a_503_is_retried_with_doubling_backoff() -> None:
    """Two 503s then an answer: three calls, sleeps of 0.5 and 1.0 seconds."""
    transport, calls = _scripted([503, 503, 200], {"hash": "a" * 40, "exists": True,
                                                   "count": 1})
    sleeps: list[float] = []
    client = Client("http://prism", token="t" * 64, transport=transport, sleep=sleeps.append)
    assert client.detail("a" * 40).exists
    assert (len(calls), sleeps) == (3, [0.5, 1.0])


def test_retries_are_bounded_and_keep_the_servers_message() -> None:
    """A prism answering 503 forever raises Unavailable after retries + 1 calls."""
    transport, calls = _scripted([503], {})
    client = Client("http://prism", token="t" * 64, transport=transport, retries=2,
                    sleep=lambda s: None)
    with pytest.raises(Unavailable, match="no store available"):
        client.detail("a" * 40)
    assert len(calls) == 3


def test_an_unreachable_prism_is_unavailable() -> None:
    """Connection errors are retried, then raised as Unavailable."""
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client = Client("http://prism", token="t" * 64, transport=httpx.MockTransport(refuse),
                    retries=1, sleep=lambda s: None)
    with pytest.raises(Unavailable, match="cannot reach") as raised:
        client.detail("a" * 40)
    assert raised.value.status == 0  # no answer, as opposed to a 503


def test_a_download_without_an_answer_has_status_zero(tmp_path) -> None:
    """A download whose store never answers is Unavailable with status 0, not 503."""
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client = Client("http://prism", token="t" * 64, transport=httpx.MockTransport(refuse),
                    retries=0, sleep=lambda s: None)
    with pytest.raises(Unavailable) as raised:
        client.download("http://store/x", tmp_path / "out.bin")
    assert raised.value.status == 0


def test_an_upload_answered_with_another_hash_is_an_integrity_error() -> None:
    """The client compares the SHA1 of what it sent with the stored hash."""
    answer = {"files": {"file": {"hash": "f" * 40, "ext": "bin", "size": 3, "copies": 2}}}
    client = Client("http://prism", token="t" * 64,
                    transport=httpx.MockTransport(lambda r: httpx.Response(200, json=answer)))
    with pytest.raises(IntegrityError):
        client.upload(io.BytesIO(b"abc"), name="x.bin")


def _download_client(store: StoreStandIn) -> Client:
    return Client("http://prism", token="t" * 64, transport=store, sleep=lambda s: None)


def test_a_cut_download_resumes_with_range(tmp_path) -> None:
    """A connection cut mid-body is resumed from the bytes on disk; the SHA1 matches."""
    store = StoreStandIn(DATA, hashlib.sha1(DATA).hexdigest())
    store.cut_after = 10_000
    dest = tmp_path / "out.bin"
    done = _download_client(store).download("http://store/x", dest)
    assert dest.read_bytes() == DATA and done.sha1 == hashlib.sha1(DATA).hexdigest()
    assert store.ranges == [None, "bytes=10000-"]


def test_a_partial_file_on_disk_is_completed(tmp_path) -> None:
    """An earlier partial download is completed by asking only for the rest."""
    store = StoreStandIn(DATA, hashlib.sha1(DATA).hexdigest())
    dest = tmp_path / "out.bin"
    dest.write_bytes(DATA[:5000])
    done = _download_client(store).download("http://store/x", dest)
    assert dest.read_bytes() == DATA and done.resumed_from == 5000
    assert store.ranges == ["bytes=5000-"]


def test_a_download_that_hashes_wrong_is_an_integrity_error(tmp_path) -> None:
    """Bytes that do not match the store's ETag raise IntegrityError."""
    store = StoreStandIn(DATA, "0" * 40)
    with pytest.raises(IntegrityError):
        _download_client(store).download("http://store/x", tmp_path / "out.bin")


def test_a_missing_download_is_not_found(tmp_path) -> None:
    """A 404 from the link raises NotFound with the server's message."""
    store = StoreStandIn(DATA, "0" * 40)
    store.on_request = lambda r: httpx.Response(404, content=json.dumps(
        {"error": "purchase not found"}).encode())
    with pytest.raises(NotFound, match="purchase not found"):
        _download_client(store).download("http://store/x", tmp_path / "out.bin")
