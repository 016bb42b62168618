"""Users and sessions: create, list, login, validate, update, logout, reset, deactivate."""

from __future__ import annotations

import pytest_twisted
from twisted.logger import capturedLogs


async def login(master, username: str, password: str):
    """POST /user/login."""
    return await master.call("POST", "/user/login", {"username": username, "password": password,
                                                     "ip": "10.0.0.1"})


@pytest_twisted.ensureDeferred
async def test_create_generates_a_password_shown_once(master) -> None:
    """POST /users answers 201 with a generated password; a second create is 409."""
    reply = await master.call("POST", "/users", {"username": "alice"})
    assert reply.code == 201
    assert reply.json["username"] == "alice" and len(reply.json["password"]) >= 16
    again = await master.call("POST", "/users", {"username": "alice"})
    assert again.code == 409
    users = (await master.call("GET", "/users")).json["users"]
    assert users == [{"username": "alice", "active": True, "created": master.clock.seconds(),
                      "failed_logins": 0, "operator": False}]
    assert "password" not in str(users)


@pytest_twisted.ensureDeferred
async def test_login_and_validate_answer_the_session(master) -> None:
    """A login opens a 64-char session that validates and carries user, ip and data."""
    await master.call("POST", "/users", {"username": "bob", "password": "s3cret-pass"})
    reply = await login(master, "bob", "s3cret-pass")
    assert reply.code == 200 and reply.json["success"] == "User logged in"
    session = reply.json["session"]
    assert len(session["token"]) == 64 and session["username"] == "bob"
    assert session["ip"] == "10.0.0.1" and session["data"] == {}
    valid = await master.call("POST", "/user/session/validate", {"token": session["token"]})
    assert valid.json["success"] == "Session valid"
    assert valid.json["session"]["token"] == session["token"]


@pytest_twisted.ensureDeferred
async def test_bad_credentials_share_one_401_and_are_counted(master) -> None:
    """Unknown user and bad password both answer the same 401; failures are counted."""
    await master.call("POST", "/users", {"username": "carol", "password": "right-one"})
    with capturedLogs() as events:
        unknown = await login(master, "nobody", "right-one")
        wrong = await login(master, "carol", "wrong-one")
    assert unknown.code == wrong.code == 401
    assert unknown.json == wrong.json == {"error": "invalid username or password"}
    assert [e["reason"] for e in events if e.get("event") == "login_failed"] == [
        "unknown_user", "bad_password"]
    users = (await master.call("GET", "/users")).json["users"]
    assert users[0]["failed_logins"] == 1
    metrics = master.api.metrics.login_failures
    assert metrics.labels(reason="unknown_user")._value.get() == 1


@pytest_twisted.ensureDeferred
async def test_session_expires_after_inactivity_and_validate_refreshes(master_factory) -> None:
    """A session dies after session_ttl of inactivity; each validate pushes the deadline."""
    master = master_factory("session_ttl = 100.0\n")
    await master.call("POST", "/users", {"username": "dave", "password": "pw-pw-pw"})
    token = (await login(master, "dave", "pw-pw-pw")).json["session"]["token"]
    master.clock.advance(90)
    refreshed = await master.call("POST", "/user/session/validate", {"token": token})
    assert refreshed.json["session"]["expires"] == master.clock.seconds() + 100
    master.clock.advance(90)
    assert (await master.call("POST", "/user/session/validate", {"token": token})).code == 200
    master.clock.advance(100)
    expired = await master.call("POST", "/user/session/validate", {"token": token})
    assert expired.code == 401


@pytest_twisted.ensureDeferred
async def test_logout_ends_the_session(master) -> None:
    """After logout the token no longer validates; a second logout is harmless."""
    await master.call("POST", "/users", {"username": "erin", "password": "pw-pw-pw"})
    token = (await login(master, "erin", "pw-pw-pw")).json["session"]["token"]
    out = await master.call("POST", "/user/logout", {"token": token})
    assert out.json == {"success": "User logged out"}
    assert (await master.call("POST", "/user/session/validate", {"token": token})).code == 401
    assert (await master.call("POST", "/user/logout", {"token": token})).code == 200
    assert (await master.call("POST", "/user/session/update",
                              {"token": token, "data": {}})).code == 401


@pytest_twisted.ensureDeferred
async def test_session_update_and_password_reset(master) -> None:
    """Session data can be replaced; a password reset gives a new working password."""
    await master.call("POST", "/users", {"username": "fay", "password": "old-password"})
    token = (await login(master, "fay", "old-password")).json["session"]["token"]
    updated = await master.call("POST", "/user/session/update",
                                {"token": token, "data": {"theme": "dark"}})
    assert updated.json["success"] == "Session updated"
    assert updated.json["session"]["data"] == {"theme": "dark"}
    valid = await master.call("POST", "/user/session/validate", {"token": token})
    assert valid.json["session"]["data"] == {"theme": "dark"}
    reset = await master.call("POST", "/user/password/reset", {"token": token})
    assert reset.json["success"] == "User password reset"
    assert (await login(master, "fay", "old-password")).code == 401
    assert (await login(master, "fay", reset.json["password"])).code == 200


@pytest_twisted.ensureDeferred
async def test_session_update_refuses_infinity(master) -> None:
    """Session data holding Infinity is refused with 400 and the stored data is unchanged."""
    await master.call("POST", "/users", {"username": "ida", "password": "pw-pw-pw"})
    token = (await login(master, "ida", "pw-pw-pw")).json["session"]["token"]
    raw = b'{"token": "' + token.encode() + b'", "data": {"x": -Infinity}}'
    refused = await master.call("POST", "/user/session/update", raw=raw,
                                headers={b"Content-Type": [b"application/json"]})
    assert refused.code == 400 and "Infinity" in refused.json["error"]
    valid = await master.call("POST", "/user/session/validate", {"token": token})
    assert valid.json["session"]["data"] == {}


@pytest_twisted.ensureDeferred
async def test_deactivate_ends_sessions_and_logins(master) -> None:
    """A deactivated user's sessions stop working and it cannot log in."""
    await master.call("POST", "/users", {"username": "gil", "password": "pw-pw-pw"})
    tokens = [(await login(master, "gil", "pw-pw-pw")).json["session"]["token"]
              for _ in range(2)]
    reply = await master.call("POST", "/users/gil/deactivate")
    assert reply.json == {"username": "gil", "active": False}
    for token in tokens:
        assert (await master.call("POST", "/user/session/validate",
                                  {"token": token})).code == 401
    assert (await login(master, "gil", "pw-pw-pw")).code == 401
    assert (await master.call("POST", "/users/nobody/deactivate")).code == 404
    assert (await master.call("GET", "/users")).json["users"][0]["active"] is False


@pytest_twisted.ensureDeferred
async def test_bad_user_input_is_400(master) -> None:
    """Malformed user and session bodies answer 400 and create nothing."""
    for body in ({}, {"username": ""}, {"username": "has space"}, {"username": 5},
                 {"username": "ok", "password": ""}, {"username": "ok", "password": "x" * 73},
                 {"username": "ok", "password": 12}):
        assert (await master.call("POST", "/users", body)).code == 400, body
    assert (await master.call("GET", "/users")).json["users"] == []
    assert (await master.call("POST", "/user/login", {"username": "a"})).code == 400
    assert (await master.call("POST", "/user/logout", {"token": 5})).code == 400
    assert (await master.call("POST", "/user/session/update", {"token": "x"})).code == 400
    assert (await master.call("POST", "/user/session/validate", {"token": "x"})).code == 401
    assert (await master.call("POST", "/user/session/validate", {})).code == 400
    assert (await master.call("POST", "/user/password/reset", {"token": 7})).code == 400
    assert (await master.call("POST", "/user/session/update",
                              {"token": "A" * 64, "data": []})).code == 400
    assert (await master.call("POST", "/users", raw=b"x" * (2 * 1024 * 1024))).code == 413


@pytest_twisted.ensureDeferred
async def test_user_routes_need_the_cluster_key(master) -> None:
    """User routes answer 401 without the cluster key and create nothing."""
    assert (await master.call("POST", "/users", {"username": "x"}, key=None)).code == 401
    assert (await master.call("GET", "/users", key=None)).code == 401
    assert (await master.call("GET", "/users")).json["users"] == []


@pytest_twisted.ensureDeferred
async def test_client_user_methods(master) -> None:
    """MasterClient wraps create, list, login, validate, update, reset, logout, deactivate."""
    client = master.client()
    created = await client.create_user("hana")
    answer = await client.login("hana", created["password"], ip="::1")
    token = answer["session"]["token"]
    assert (await client.validate_session(token))["username"] == "hana"
    assert (await client.update_session(token, {"a": 1}))["session"]["data"] == {"a": 1}
    assert "password" in await client.reset_password(token)
    assert (await client.logout(token))["success"] == "User logged out"
    assert [u["username"] for u in await client.list_users()] == ["hana"]
    assert (await client.deactivate_user("hana"))["active"] is False


def test_password_work_is_bounded_under_a_login_flood() -> None:
    """At most BCRYPT_THREADS bcrypt jobs run at once (the other pool threads stay free)
    and past BCRYPT_MAX_WAITING queued a login is refused at once (503), not queued."""
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from stretchfs.errors import NotReady
    from stretchfs.master import users as users_module
    from stretchfs.master.keys import Keys

    running: list[Deferred] = []

    def held(function, *args):
        waiting: Deferred = Deferred()
        running.append(waiting)
        return waiting

    users = users_module.Users(None, Keys("t:"), Clock(), session_ttl=60, bcrypt_rounds=4,
                               run_blocking=held)
    limit = users_module.BCRYPT_THREADS + users_module.BCRYPT_MAX_WAITING
    checks = [Deferred.fromCoroutine(users._check("pw", b"x")) for _ in range(limit)]
    assert len(running) == users_module.BCRYPT_THREADS
    refused = Deferred.fromCoroutine(users._check("pw", b"x"))
    failures: list = []
    refused.addErrback(failures.append)
    assert failures and failures[0].check(NotReady)
    for _ in range(limit):
        running.pop(0).callback(True)
    assert all(check.called for check in checks)
