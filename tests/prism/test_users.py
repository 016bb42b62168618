"""User routes and session checks (proxied to the master, SDK-shaped)."""

from __future__ import annotations

from tests.prism.fakes import TOKEN
from tests.prism.harness import make_prism


def test_login_answers_the_sdk_shape(tmp_path) -> None:
    """POST /user/login answers {"success": "User logged in", "session": {token, ...}}."""
    prism = make_prism(tmp_path)
    code, body, _ = prism.call("POST", "/user/login",
                               {"username": "admin", "password": "secret"}, token=None)
    assert code == 200 and body["success"] == "User logged in"
    assert len(body["session"]["token"]) == 64
    assert {"token", "ip", "data", "expires"} <= set(body["session"])
    prism.stop()


def test_login_with_bad_credentials_is_401(tmp_path) -> None:
    """A wrong password and an unknown user both answer 401 with the same message."""
    prism = make_prism(tmp_path)
    a = prism.call("POST", "/user/login", {"username": "admin", "password": "x"}, token=None)
    b = prism.call("POST", "/user/login", {"username": "nobody", "password": "x"}, token=None)
    assert a[0] == b[0] == 401 and a[1] == b[1]
    prism.stop()


def test_login_with_malformed_body_is_400(tmp_path) -> None:
    """A login without username/password, or with a non-object body, answers 400."""
    prism = make_prism(tmp_path)
    assert prism.call("POST", "/user/login", {"username": "admin"}, token=None)[0] == 400
    assert prism.call("POST", "/user/login", ["x"], token=None)[0] == 400
    assert prism.call("POST", "/user/login", token=None, data=b"{nope",
                      headers={"Content-Type": "application/json"})[0] == 400
    prism.stop()


def test_session_validate_accepts_both_headers(tmp_path) -> None:
    """X-STRETCHFS-Token and X-OOSE-Token both carry the session."""
    prism = make_prism(tmp_path)
    code, body, _ = prism.call("POST", "/user/session/validate")
    assert code == 200 and body["success"] == "Session valid"
    assert body["session"]["token"] == TOKEN
    code, body, _ = prism.call("POST", "/user/session/validate", token=None,
                               headers={"X-OOSE-Token": TOKEN})
    assert code == 200
    prism.stop()


def test_missing_or_invalid_session_is_401(tmp_path) -> None:
    """No token, a malformed token or an unknown token answer 401."""
    prism = make_prism(tmp_path)
    assert prism.call("POST", "/content/exists", {"hash": "a" * 40}, token=None)[0] == 401
    assert prism.call("POST", "/content/exists", {"hash": "a" * 40}, token="bad!")[0] == 401
    assert prism.call("POST", "/content/exists", {"hash": "a" * 40}, token="u" * 64)[0] == 401
    prism.stop()


def test_malformed_session_is_401_even_with_the_master_down(tmp_path) -> None:
    """A token the master could never have drawn is refused locally: 401, never 503."""
    prism = make_prism(tmp_path)
    prism.network.down.add("master")
    for token in ("u" * 63, "u" * 65, "u" * 128, "u_" * 32):
        code, body, _ = prism.call("POST", "/user/session/validate", token=token)
        assert code == 401 and "error" in body, token
    prism.stop()


def test_sessions_are_cached_for_the_configured_ttl(tmp_path) -> None:
    """Within session_cache_ttl the master is asked once; after it, again."""
    prism = make_prism(tmp_path)
    for _ in range(3):
        assert prism.call("POST", "/user/session/validate")[0] == 200
    assert prism.master.calls.count("validate") == 1
    prism.pump(2.5)
    assert prism.call("POST", "/user/session/validate")[0] == 200
    assert prism.master.calls.count("validate") == 2
    prism.stop()


def test_logout_elsewhere_stops_the_token_within_the_ttl(tmp_path) -> None:
    """A session ended on the master stops working here once the cache entry ages out."""
    prism = make_prism(tmp_path)
    assert prism.call("POST", "/user/session/validate")[0] == 200
    del prism.master.sessions[TOKEN]
    prism.pump(2.5)
    assert prism.call("POST", "/user/session/validate")[0] == 401
    prism.stop()


def test_logout_here_stops_the_token_at_once(tmp_path) -> None:
    """POST /user/logout answers the SDK message and the token is refused right after."""
    prism = make_prism(tmp_path)
    assert prism.call("POST", "/user/session/validate")[0] == 200
    code, body, _ = prism.call("POST", "/user/logout")
    assert code == 200 and body == {"success": "User logged out"}
    assert prism.call("POST", "/user/session/validate")[0] == 401
    prism.stop()


def test_session_update_and_password_reset(tmp_path) -> None:
    """Session update stores data; password reset returns the new password."""
    prism = make_prism(tmp_path)
    code, body, _ = prism.call("POST", "/user/session/update", {"data": {"a": 1}})
    assert code == 200 and body["success"] == "Session updated"
    assert body["session"]["data"] == {"a": 1}
    assert prism.call("POST", "/user/session/update", {"data": [1]})[0] == 400
    code, body, _ = prism.call("POST", "/user/password/reset")
    assert code == 200 and body == {"success": "User password reset",
                                    "password": "new-password"}
    prism.stop()


def test_session_update_refuses_nan(tmp_path) -> None:
    """Session data holding NaN is refused with 400 and the master's copy is unchanged."""
    prism = make_prism(tmp_path)
    before = dict(prism.master.sessions[TOKEN])
    code, body, _ = prism.call("POST", "/user/session/update", data=b'{"data": {"x": NaN}}',
                               headers={"Content-Type": "application/json"})
    assert code == 400 and "NaN" in body["error"]
    assert prism.master.sessions[TOKEN] == before
    prism.stop()


def test_a_master_answer_with_nan_is_not_echoed(tmp_path) -> None:
    """A master answer holding NaN is refused as a bad upstream answer, never passed on."""
    prism = make_prism(tmp_path)
    prism.master.sessions[TOKEN]["data"] = {"x": float("nan")}
    code, body, _ = prism.call("POST", "/user/session/validate")
    assert code == 503 and "master" in body["error"]
    prism.stop()


def test_session_check_with_master_down_is_503(tmp_path) -> None:
    """An uncached session cannot be verified while the master is down: 503, not 401."""
    prism = make_prism(tmp_path)
    prism.network.down.add("master")
    code, body, _ = prism.call("POST", "/user/session/validate")
    assert code == 503 and "master" in body["error"]
    prism.stop()
