"""Sessions while the master is away: known ones keep working, unknown ones get 503."""

from __future__ import annotations

import pytest
from twisted.internet.defer import ensureDeferred

from stretchfs.errors import NotReady, PeerUnavailable, Unauthorized, UpstreamError
from stretchfs.prism.sessions import SessionCache
from tests.helpers import result_of

TOKEN = "a" * 64


class _Master:
    """A master whose validate_session answers from a script."""

    def __init__(self) -> None:
        self.answer: object = None

    async def validate_session(self, token: str) -> dict:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[return-value]


def _validate(cache: SessionCache, token: str = TOKEN) -> dict:
    return result_of(ensureDeferred(cache.validate(token)))


def test_validated_session_survives_a_master_outage(clock) -> None:
    """A session the master validated keeps working while the master is unreachable."""
    master = _Master()
    master.answer = {"token": TOKEN, "expires": clock.seconds() + 3600}
    cache = SessionCache(master, clock, ttl=2.0)
    assert _validate(cache)["token"] == TOKEN
    clock.advance(60)
    master.answer = PeerUnavailable("master down")
    assert _validate(cache)["token"] == TOKEN
    master.answer = UpstreamError(503, b"{}")
    assert _validate(cache)["token"] == TOKEN


def test_expired_or_unknown_session_is_503_while_master_is_away(clock) -> None:
    """Without a cached, unexpired session the answer is 503 (NotReady), never a 401."""
    master = _Master()
    master.answer = {"token": TOKEN, "expires": clock.seconds() + 10}
    cache = SessionCache(master, clock, ttl=2.0)
    _validate(cache)
    clock.advance(11)
    master.answer = PeerUnavailable("master down")
    with pytest.raises(NotReady):
        _validate(cache)
    with pytest.raises(NotReady):
        _validate(cache, "b" * 64)


def test_logout_seen_by_master_still_wins(clock) -> None:
    """Once the master answers again, an invalid session is refused at once."""
    master = _Master()
    master.answer = {"token": TOKEN, "expires": clock.seconds() + 3600}
    cache = SessionCache(master, clock, ttl=2.0)
    _validate(cache)
    clock.advance(3)
    master.answer = UpstreamError(401, b"{}")
    with pytest.raises(Unauthorized):
        _validate(cache)
