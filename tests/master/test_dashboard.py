"""The operators' dashboard: sign-in, sessions, CSRF, and the state it shows."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest_twisted

from stretchfs.master.dashauth import SESSION_SECONDS
from tests.helpers import CLUSTER_KEY

FORM = {b"Content-Type": [b"application/x-www-form-urlencoded"]}


class Browser:
    """Keeps the cookies a browser would, over the master test harness."""

    def __init__(self, master: Any) -> None:
        self.master = master
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []

    async def call(self, method: str, path: str, form: dict[str, str] | None = None) -> Any:
        headers = dict(FORM) if form is not None else {}
        if self.cookies:
            headers[b"Cookie"] = ["; ".join("{}={}".format(k, v) for k, v in
                                            self.cookies.items()).encode()]
        reply = await self.master.call(method, path, key=None, headers=headers,
                                       raw=urlencode(form).encode() if form is not None
                                       else None)
        for header in reply.headers.getRawHeaders(b"set-cookie", []):
            text = header.decode()
            self.set_cookies.append(text)
            name, _, value = text.split(";")[0].partition("=")
            if value:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return reply

    async def sign_in(self, username: str, password: str) -> Any:
        form = await self.call("GET", "/login")
        csrf = re.search(r'name="csrf" value="([A-Za-z0-9]+)"', form.body.decode()).group(1)
        return await self.call("POST", "/login", {"csrf": csrf, "username": username,
                                                 "password": password})


async def _operator(master: Any, name: str = "ops", operator: bool = True) -> str:
    created = await master.call("POST", "/users", {"username": name, "operator": operator})
    assert created.code == 201
    return created.json["password"]


async def _store(master: Any, name: str) -> None:
    await master.call("POST", "/peers/register", {"name": name, "role": "store",
                                                  "host": "127.0.0.9", "port": 8299})


@pytest_twisted.ensureDeferred
async def test_nothing_of_the_cluster_is_readable_without_signing_in(master) -> None:
    """Without a session the page redirects to /login, the state answers 401, and neither
    the answers nor the sign-in form name a host, port or user; /health, /metrics stay open."""
    await _store(master, "store7")
    await _operator(master, "alice")
    anonymous = Browser(master)
    page = await anonymous.call("GET", "/")
    assert page.code == 303 and page.headers.getRawHeaders(b"location") == [b"/login"]
    state = await anonymous.call("GET", "/dashboard/state")
    assert state.code == 401 and set(state.json) == {"error"}
    form = await anonymous.call("GET", "/login")
    assert form.code == 200 and b'name="password"' in form.body
    wrong_key = await master.call("GET", "/dashboard/state", key="not-the-key")
    assert wrong_key.code == 401
    pingnet = await master.call("GET", "/pingnet/status", key=None)
    assert pingnet.code == 401
    for reply in (page, state, form, wrong_key, pingnet):
        for secret in (b"store7", b"127.0.0.9", b"8299", b"alice"):
            assert secret not in reply.body
    assert (await master.call("GET", "/health", key=None)).code == 200
    assert (await master.call("GET", "/metrics", key=None)).code == 200


@pytest_twisted.ensureDeferred
async def test_operator_signs_in_sees_the_cluster_and_signs_out(master) -> None:
    """An operator's sign-in sets a strict HttpOnly expiring cookie; the page and state then
    show the nodes; signing out needs the session's CSRF token and ends the session."""
    password = await _operator(master)
    await _store(master, "store1")
    browser = Browser(master)
    signed = await browser.sign_in("ops", password)
    assert signed.code == 303 and signed.headers.getRawHeaders(b"location") == [b"/"]
    session_cookie = [c for c in browser.set_cookies if c.startswith("sfs_dash=")][-1]
    attributes = session_cookie.lower()
    assert "httponly" in attributes and "samesite=strict" in attributes
    assert "max-age={}".format(SESSION_SECONDS) in attributes
    assert "secure" not in attributes  # plain HTTP here; Secure when served over TLS
    page = await browser.call("GET", "/")
    assert page.code == 200 and b"operator ops" in page.body
    assert b"default-src 'self'" in page.headers.getRawHeaders(b"content-security-policy")[0]
    state = await browser.call("GET", "/dashboard/state")
    assert state.code == 200
    assert [n["name"] for n in state.json["nodes"]] == ["store1"]
    assert state.json["nodes"][0]["health"] == "unknown"  # no probe in this test
    forged = await browser.call("POST", "/logout", {"csrf": "x" * 64})
    assert forged.code == 403
    assert (await browser.call("GET", "/dashboard/state")).code == 200
    csrf = re.search(r'name="csrf" value="([A-Za-z0-9]+)"', page.body.decode()).group(1)
    out = await browser.call("POST", "/logout", {"csrf": csrf})
    assert out.code == 303 and "sfs_dash" not in browser.cookies
    assert (await browser.call("GET", "/dashboard/state")).code == 401


@pytest_twisted.ensureDeferred
async def test_cluster_key_signs_in_and_reads_the_state(master) -> None:
    """The cluster key signs in through the form (empty operator name) and, as a bearer
    token, reads the state directly."""
    browser = Browser(master)
    assert (await browser.sign_in("", CLUSTER_KEY)).code == 303
    page = await browser.call("GET", "/")
    assert page.code == 200 and b"cluster key" in page.body
    assert (await master.call("GET", "/dashboard/state")).code == 200


@pytest_twisted.ensureDeferred
async def test_bad_sign_ins_are_refused_and_counted(master) -> None:
    """A wrong password, a non-operator, a wrong cluster key get 401 with the form again;
    a sign-in without the form's CSRF token gets 403; none opens a session."""
    password = await _operator(master)
    user_password = await _operator(master, "bob", operator=False)
    for username, secret in (("ops", "wrong"), ("bob", user_password), ("", "wrong-key"),
                             ("no-such-user", password)):
        browser = Browser(master)
        reply = await browser.sign_in(username, secret)
        assert reply.code == 401, username
        assert b"invalid operator name, password or cluster key" in reply.body
        assert "sfs_dash" not in browser.cookies
    no_form = Browser(master)
    reply = await no_form.call("POST", "/login", {"username": "ops", "password": password})
    assert reply.code == 403 and "sfs_dash" not in no_form.cookies
    metrics = (await master.call("GET", "/metrics", key=None)).body.decode()
    assert 'stretchfs_master_login_failures_total{reason="not_operator"} 1.0' in metrics
    assert 'stretchfs_master_login_failures_total{reason="bad_password"} 1.0' in metrics


@pytest_twisted.ensureDeferred
async def test_session_ends_when_operator_revoked_or_expired(master) -> None:
    """An operator's session stops working once the flag is revoked, and any session
    after SESSION_SECONDS."""
    password = await _operator(master)
    browser = Browser(master)
    await browser.sign_in("ops", password)
    assert (await browser.call("GET", "/dashboard/state")).code == 200
    revoked = await master.call("POST", "/users/ops/operator", {"operator": False})
    assert revoked.json == {"username": "ops", "operator": False}
    assert (await browser.call("GET", "/dashboard/state")).code == 401
    assert (await browser.call("GET", "/")).code == 303
    keyed = Browser(master)
    await keyed.sign_in("", CLUSTER_KEY)
    assert (await keyed.call("GET", "/dashboard/state")).code == 200
    master.clock.advance(SESSION_SECONDS)
    assert (await keyed.call("GET", "/dashboard/state")).code == 401
    bad = await master.call("POST", "/users/ops/operator", {"operator": "yes"})
    assert bad.code == 400


@pytest_twisted.ensureDeferred
async def test_state_counts_hashes_by_copies(master) -> None:
    """Hashes by number of copies follow every publish: adds, second and third copies,
    removes, without scanning the rows."""
    def add(sha1: str) -> dict[str, Any]:
        return {"op": "add", "hash": sha1, "ext": "mp4", "size": 1}

    a, b, c = "a" * 40, "b" * 40, "c" * 40
    for store, changes in (("s1", [add(a), add(b), add(c)]), ("s2", [add(a), add(b)]),
                           ("s3", [add(a)]), ("s1", [add(a)])):  # the replay changes nothing
        await master.call("POST", "/inventory/publish", {"store": store, "changes": changes})
    state = (await master.call("GET", "/dashboard/state")).json
    assert state["copies"] == {"1": 1, "2": 1, "3+": 1, "complete": True}
    await master.call("POST", "/inventory/publish", {"store": "s2", "changes": [
        {"op": "remove", "hash": b}, {"op": "remove", "hash": a}]})
    state = (await master.call("GET", "/dashboard/state")).json
    assert state["copies"] == {"1": 2, "2": 1, "3+": 0, "complete": True}
    assert state["counts"]["content"] == 3
    await master.call("POST", "/inventory/publish", {"store": "s1", "changes": [
        {"op": "remove", "hash": c}]})
    state = (await master.call("GET", "/dashboard/state")).json
    assert state["copies"] == {"1": 1, "2": 1, "3+": 0, "complete": True}


@pytest_twisted.ensureDeferred
async def test_static_files_are_served_and_others_are_not(master) -> None:
    """The page's script and stylesheet are served with their types; other names are 404."""
    script = await master.call("GET", "/dashboard/dashboard.js", key=None)
    assert script.code == 200 and b"/dashboard/state" in script.body
    assert script.headers.getRawHeaders(b"content-type")[0].startswith(b"text/javascript")
    assert (await master.call("GET", "/dashboard/dashboard.css", key=None)).code == 200
    assert (await master.call("GET", "/dashboard/login.html", key=None)).code == 404
