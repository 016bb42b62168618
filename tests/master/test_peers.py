"""Peer registry: register, list, get, update flags, remove."""

from __future__ import annotations

import pytest_twisted


def registration(name: str = "store1", **extra) -> dict:
    """A registration body."""
    body = {"name": name, "role": "store", "host": "127.0.0.5", "port": 8200,
            "ping_port": 8300, "site": "lax", "zone": "z1"}
    body.update(extra)
    return body


@pytest_twisted.ensureDeferred
async def test_register_creates_an_active_writable_peer(master) -> None:
    """A new peer starts active and writable, with a default URL."""
    reply = await master.call("POST", "/peers/register", registration())
    assert reply.code == 200
    record = reply.json
    assert record["active"] is True and record["writable"] is True
    assert record["url"] == "http://127.0.0.5:8200" and record["port"] == 8200
    assert record["registered"] == master.clock.seconds()
    assert (await master.call("GET", "/peers/store1")).json == record
    assert (await master.call("GET", "/peers")).json == {"peers": [record]}


@pytest_twisted.ensureDeferred
async def test_reregistering_never_overrides_operator_flags(master) -> None:
    """After an operator sets active=false, a restart's registration keeps it false."""
    await master.call("POST", "/peers/register", registration())
    updated = await master.call("POST", "/peers/store1/update", {"active": False,
                                                                 "writable": False})
    assert updated.json["active"] is False and updated.json["writable"] is False
    master.clock.advance(10)
    again = (await master.call("POST", "/peers/register", registration(port=8201))).json
    assert again["active"] is False and again["writable"] is False
    assert again["port"] == 8201 and again["updated"] == master.clock.seconds()
    assert again["registered"] == master.clock.seconds() - 10


@pytest_twisted.ensureDeferred
async def test_remove_forgets_the_peer(master) -> None:
    """A removed peer is gone from the list; removing or updating it again is 404."""
    await master.call("POST", "/peers/register", registration("prism1", role="prism"))
    assert (await master.call("POST", "/peers/prism1/remove")).json == {"removed": True}
    assert (await master.call("GET", "/peers")).json == {"peers": []}
    assert (await master.call("POST", "/peers/prism1/remove")).code == 404
    assert (await master.call("POST", "/peers/prism1/update", {"active": True})).code == 404
    assert (await master.call("GET", "/peers/prism1")).code == 404


@pytest_twisted.ensureDeferred
async def test_bad_peer_input_is_400(master) -> None:
    """Malformed registrations and flag updates answer 400 and change nothing."""
    for body in (registration(name="Bad Name"), registration(role="master"),
                 registration(port=0), registration(port="80"), registration(host=""),
                 registration(ping_port=70000), registration(url="ftp://x"),
                 {"name": "x", "role": "store"}):
        assert (await master.call("POST", "/peers/register", body)).code == 400, body
    assert (await master.call("GET", "/peers")).json == {"peers": []}
    await master.call("POST", "/peers/register", registration())
    for body in ({}, {"active": "no"}, {"available": True}, {"active": 1}):
        assert (await master.call("POST", "/peers/store1/update", body)).code == 400, body
    assert (await master.call("GET", "/peers/store1")).json["active"] is True
    assert (await master.call("GET", "/peers/Bad_Name")).code == 400


@pytest_twisted.ensureDeferred
async def test_peer_routes_need_the_cluster_key(master) -> None:
    """Registering without the cluster key is 401 and registers nothing."""
    assert (await master.call("POST", "/peers/register", registration(), key=None)).code == 401
    assert (await master.call("GET", "/peers", key=None)).code == 401
    assert (await master.call("GET", "/peers")).json == {"peers": []}


@pytest_twisted.ensureDeferred
async def test_client_peer_methods(master) -> None:
    """MasterClient wraps register, list, update and remove."""
    client = master.client()
    await client.register_peer(registration("store2"))
    await client.register_peer(registration("prism1", role="prism", url="https://p1.example/"))
    peers = await client.list_peers()
    assert [p["name"] for p in peers] == ["prism1", "store2"]
    assert peers[0]["url"] == "https://p1.example"
    assert (await client.update_peer("store2", writable=False))["writable"] is False
    assert (await client.remove_peer("store2")) == {"removed": True}
