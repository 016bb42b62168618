"""Domain exceptions become the right status and a JSON error body."""

from __future__ import annotations

import json

import pytest
from klein import Klein
from treq.testing import StubTreq

from stretchfs import errors
from stretchfs.web.auth import cluster_key_required
from stretchfs.web.errormap import install_error_handlers
from stretchfs.web.jsonio import read_json_object, write_json
from tests.helpers import CLUSTER_KEY, result_of


class _Raiser:
    app = Klein()
    install_error_handlers(app)
    cluster_key = CLUSTER_KEY

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    @app.route("/boom")
    def boom(self, request):
        raise self.exc

    @app.route("/echo", methods=["POST"])
    def echo(self, request):
        return write_json(request, read_json_object(request, 64))

    @app.route("/infinite")
    def infinite(self, request):
        return write_json(request, {"ratio": float("inf")})

    @app.route("/internal")
    @cluster_key_required
    def internal(self, request):
        return write_json(request, {"ok": True})


def _call(exc: BaseException, path: str = "/boom", method: str = "GET", **kwargs):
    stub = StubTreq(_Raiser(exc).app.resource())
    response = result_of(stub.request(method, "http://x" + path, **kwargs))
    return response.code, json.loads(result_of(stub.content(response)))


@pytest.mark.parametrize("exc,code", [
    (errors.InvalidInput("bad hash"), 400), (errors.Unauthorized("no session"), 401),
    (errors.Forbidden("referrer"), 403), (errors.NotFound("no such content"), 404),
    (errors.Conflict("exists"), 409), (errors.Gone("cursor trimmed"), 410),
    (errors.PayloadTooLarge("too big"), 413), (errors.NotReady("syncing"), 503),
    (errors.PeerUnavailable("master down"), 503), (errors.InsufficientStorage("full"), 507),
])
def test_domain_errors_map_to_status(exc: BaseException, code: int) -> None:
    """Each domain error answers its status with its message as {"error": ...}."""
    assert _call(exc) == (code, {"error": str(exc)})


def test_unexpected_errors_hide_the_traceback() -> None:
    """Any other exception answers 500 {"error": "internal error"} and nothing more."""
    code, body = _call(KeyError("secret internals"))
    assert (code, body) == (500, {"error": "internal error"})


def test_malformed_json_is_400() -> None:
    """A body that is not JSON is refused with 400."""
    assert _call(None, "/echo", "POST", data=b"{nope")[0] == 400  # type: ignore[arg-type]


def test_json_that_is_not_an_object_is_400() -> None:
    """A JSON list where an object is expected is refused with 400."""
    code, body = _call(None, "/echo", "POST", data=b"[1,2]")  # type: ignore[arg-type]
    assert (code, body) == (400, {"error": "expected a JSON object"})


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_in_a_body_are_400(number: bytes) -> None:
    """NaN, Infinity and numbers too large for a float are refused, never echoed back."""
    code, body = _call(None, "/echo", "POST", data=b'{"a":' + number + b"}")  # type: ignore
    assert code == 400
    assert body["error"].startswith("malformed JSON body: ")
    assert number.decode() in body["error"]


def test_a_non_finite_number_in_an_answer_is_a_logged_500() -> None:
    """An answer holding an infinite float is a logged 500 with valid JSON, not `Infinity`."""
    from twisted.logger import capturedLogs

    with capturedLogs() as events:
        code, body = _call(None, "/infinite")  # type: ignore[arg-type]
    assert (code, body) == (500, {"error": "internal error"})
    assert any(event.get("log_failure") is not None for event in events)


def test_oversized_json_is_413() -> None:
    """A body over the route's limit is refused with 413."""
    code, _ = _call(None, "/echo", "POST", data=b'{"a":"' + b"x" * 100 + b'"}')  # type: ignore
    assert code == 413


def test_cluster_key_required_on_internal_routes() -> None:
    """Internal routes refuse a missing or wrong cluster key with 401 and accept the right one."""
    assert _call(None, "/internal")[0] == 401  # type: ignore[arg-type]
    wrong = {"Authorization": "Bearer wrong-key"}
    assert _call(None, "/internal", headers=wrong)[0] == 401  # type: ignore[arg-type]
    right = {"Authorization": "Bearer " + CLUSTER_KEY}
    assert _call(None, "/internal", headers=right) == (200, {"ok": True})  # type: ignore
