"""One translation of another role's failure (stretchfs/wire/upstream.py)."""

from __future__ import annotations

import pytest
from twisted.internet.defer import ensureDeferred, fail, succeed

from stretchfs import errors
from stretchfs.wire.upstream import error_text, relay, translate
from tests.helpers import result_of


@pytest.mark.parametrize("code,kind", [
    (400, errors.InvalidInput), (401, errors.Unauthorized), (403, errors.Forbidden),
    (404, errors.NotFound), (409, errors.Conflict), (413, errors.PayloadTooLarge)])
def test_a_client_error_keeps_its_meaning_and_the_peers_text(code, kind) -> None:
    """A 4xx of the other role is the same kind of error here, with its `error` text."""
    answer = translate(errors.UpstreamError(code, b'{"error": "no such user"}'), "master",
                       "log in")
    assert type(answer) is kind and str(answer) == "no such user"


def test_a_client_error_without_text_names_what_failed() -> None:
    """A 4xx whose body says nothing usable is explained by what was being done."""
    for body in (b"", b"not json", b"[1]", b'{"error": null}'):
        answer = translate(errors.UpstreamError(409, body), "master", "create the purchase")
        assert isinstance(answer, errors.Conflict) and str(answer) == "create the purchase"


def test_anything_else_is_a_503_naming_the_peer() -> None:
    """A 5xx, an odd status or an unreachable peer is NotReady (503), never a 500."""
    answer = translate(errors.UpstreamError(500, b'{"error": "internal error"}'), "master",
                       "log in")
    assert isinstance(answer, errors.NotReady) and str(answer) == "master answered 500 to log in"
    answer = translate(errors.UpstreamError(302, b""), "master", "log in")
    assert isinstance(answer, errors.NotReady)
    for exc in (errors.PeerUnavailable("refused"), errors.TlsRejected("bad certificate")):
        answer = translate(exc, "master", "log in")
        assert isinstance(answer, errors.NotReady)
        assert str(answer) == "master unreachable: cannot log in"


def test_relay_passes_answers_and_translates_failures() -> None:
    """relay returns the call's answer, and raises a failure as translate answers it."""
    assert result_of(ensureDeferred(relay(succeed({"ok": 1}), "master", "x"))) == {"ok": 1}
    failed = ensureDeferred(relay(fail(errors.UpstreamError(404, b'{"error": "gone"}')),
                                  "master", "x"))
    failure = []
    failed.addErrback(failure.append)
    assert failure[0].check(errors.NotFound) and str(failure[0].value) == "gone"


def test_error_text_reads_the_error_field() -> None:
    """The `error` field of a JSON object body; '' for anything else."""
    assert error_text(b'{"error": "disk full"}') == "disk full"
    assert error_text(b'{"message": "x"}') == error_text(b"\xff") == error_text(b"") == ""
