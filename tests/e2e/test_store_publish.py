"""A real store process: streamed PUTs, signed GETs, durable publishing."""

from __future__ import annotations

import hashlib
import os
import socket
import time

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from stretchfs.devcluster.ports import free_port
from stretchfs.wire.signing import content_path, delivery_secret, signed_query
from tests.helpers import CLUSTER_KEY, minimal_config

AUTH = {b"Authorization": [b"Bearer " + CLUSTER_KEY.encode()]}


def _client():
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


async def _pause(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


def _store_config(root: str, master_port: int) -> str:
    return minimal_config("store", root=root,
                          master_url="http://127.0.0.1:{}".format(master_port),
                          extra="\n[ping]\nenabled = false\n")


def _files(folder: str) -> list[str]:
    return sorted(os.path.join(base, name) for base, _, names in os.walk(folder)
                  for name in names)


@pytest_twisted.ensureDeferred
async def test_queued_publishes_survive_a_store_restart_with_the_master_down(launch,
                                                                             tmp_path) -> None:
    """Master down, PUT, store restarted, master up: the add reaches the master from the journal."""
    import treq
    from twisted.web.server import Site

    from tests.store.standin_master import StandinMaster

    http = _client()
    master_port = free_port()
    root = str(tmp_path / "store-root")
    config = _store_config(root, master_port)
    store = launch("store", config, name="store1")
    base = "http://127.0.0.1:{}".format(store.port)
    data = os.urandom(300_000)
    sha1 = hashlib.sha1(data).hexdigest()
    response = await http.put(base + "/content/put/{}.mp4".format(sha1), data=data,
                              headers=AUTH, timeout=10)
    assert response.code == 201, await response.text()
    await treq.content(response)
    store.stop(timeout=10)
    assert store.shut_down_cleanly()

    store = launch("store", config, name="store1-restarted")
    master = StandinMaster(CLUSTER_KEY)
    port = reactor.listenTCP(master_port, Site(master), interface="127.0.0.1")
    try:
        deadline = time.monotonic() + 30
        while not master.batches and time.monotonic() < deadline:
            await _pause(0.2)
        assert master.batches, "nothing published within 30 s"
        first = master.batches[0]
        assert first["listed"] == 0, "the add must come from the journal, not from a sync"
        assert {"op": "add", "hash": sha1, "ext": "mp4", "size": len(data)} in first["changes"]

        base = "http://127.0.0.1:{}".format(store.port)
        path = content_path(sha1, "mp4")
        query = signed_query(delivery_secret(CLUSTER_KEY), path, int(time.time()) + 60)
        response = await http.get(base + path + "?" + query,
                                  headers={"Range": "bytes=100-199"}, timeout=10)
        assert response.code == 206
        assert await treq.content(response) == data[100:200]
    finally:
        await port.stopListening()
        store.stop(timeout=10)
    assert store.shut_down_cleanly()


@pytest_twisted.ensureDeferred
async def test_upload_cut_midway_leaves_no_file_and_no_inventory(launch, tmp_path) -> None:
    """A real client disconnecting mid-PUT leaves no temp file, no content and no publish."""
    from twisted.web.server import Site

    from tests.store.standin_master import StandinMaster

    master = StandinMaster(CLUSTER_KEY)
    master_port = free_port()
    port = reactor.listenTCP(master_port, Site(master), interface="127.0.0.1")
    root = str(tmp_path / "store-root")
    store = launch("store", _store_config(root, master_port), name="store1")
    try:
        deadline = time.monotonic() + 20
        while master.listed == 0 and time.monotonic() < deadline:
            await _pause(0.1)
        data = os.urandom(4_000_000)
        sha1 = hashlib.sha1(data).hexdigest()
        head = ("PUT /content/put/{}.bin HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {}\r\n"
                "Content-Length: {}\r\n\r\n").format(sha1, CLUSTER_KEY, len(data)).encode()
        with socket.create_connection(("127.0.0.1", store.port), timeout=5) as sock:
            sock.sendall(head + data[:2_000_000])
            deadline = time.monotonic() + 10
            while not _files(os.path.join(root, "tmp")) and time.monotonic() < deadline:
                await _pause(0.05)
            assert _files(os.path.join(root, "tmp")), "the body should stream into tmp/"
        deadline = time.monotonic() + 10
        while _files(os.path.join(root, "tmp")) and time.monotonic() < deadline:
            await _pause(0.05)
        assert _files(os.path.join(root, "tmp")) == []
        assert _files(os.path.join(root, "content")) == []
        await _pause(0.5)
        assert all(c["hash"] != sha1 for b in master.batches for c in b["changes"])
    finally:
        store.stop(timeout=10)
        await port.stopListening()
    assert store.shut_down_cleanly()
