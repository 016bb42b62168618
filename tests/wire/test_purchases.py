"""What a purchase request is, for prism and master alike (stretchfs/wire/purchases.py)."""

from __future__ import annotations

import pytest

from stretchfs.errors import InvalidInput
from stretchfs.wire.purchases import MAX_LIFE_SECONDS, PurchaseRequest, parse_purchase_request

SHA1 = "0123456789abcdef0123456789abcdef01234567"


def _parse(body: dict, public: bool = False) -> PurchaseRequest:
    return parse_purchase_request(body, default_life=7200.0, default_ip="10.1.1.1",
                                  public=public)


def test_a_full_request_is_read_in_canonical_form() -> None:
    """Every field is read; an integral life is an int, referrer a list."""
    assert _parse({"hash": SHA1, "ext": "mp4", "life": 60.0, "referrer": "example.com",
                   "ip": "1.2.3.4"}) == PurchaseRequest(SHA1, "mp4", 60, ["example.com"],
                                                        "1.2.3.4")
    assert _parse({"sha1": SHA1, "life": 1.5}).life == 1.5


def test_defaults_fill_what_is_absent() -> None:
    """No ext stays None (the caller decides); life and ip take the caller's defaults."""
    wanted = _parse({"hash": SHA1, "referrer": None})
    assert wanted == PurchaseRequest(SHA1, None, 7200, [], "10.1.1.1")
    assert _parse({"hash": SHA1, "referrer": ""}).referrer == []


@pytest.mark.parametrize("body", [
    {}, {"hash": "zz"}, {"hash": SHA1.upper()}, {"hash": [SHA1]},
    {"hash": SHA1, "ext": "../x"}, {"hash": SHA1, "ext": "MP4"}, {"hash": SHA1, "ext": ""},
    {"hash": SHA1, "life": 0}, {"hash": SHA1, "life": 0.5}, {"hash": SHA1, "life": -1},
    {"hash": SHA1, "life": MAX_LIFE_SECONDS + 1}, {"hash": SHA1, "life": True},
    {"hash": SHA1, "life": "60"}, {"hash": SHA1, "life": float("nan")},
    {"hash": SHA1, "referrer": [5]}, {"hash": SHA1, "referrer": [""]},
    {"hash": SHA1, "referrer": ["x" * 256]}, {"hash": SHA1, "referrer": ["a.com"] * 101},
    {"hash": SHA1, "referrer": {"a": 1}}, {"hash": SHA1, "ip": 5},
    {"hash": SHA1, "ip": "x" * 65}])
def test_malformed_requests_are_invalid_input(body: dict) -> None:
    """Each malformed field is a 400 (InvalidInput) on the internal, canonical form."""
    with pytest.raises(InvalidInput):
        _parse(body)


def test_referrer_lists_past_16_kib_of_json_are_refused() -> None:
    """Patterns of legal length that add up past 16 KiB of JSON are refused."""
    with pytest.raises(InvalidInput, match="referrer"):
        _parse({"hash": SHA1, "referrer": ["\U0001F600" * 30] * 100})


def test_public_requests_take_the_forms_clients_send() -> None:
    """A public request takes any-case hash and ext and a digit-string life, canonicalised."""
    wanted = _parse({"hash": " " + SHA1.upper(), "ext": "MP4", "life": " 60 "}, public=True)
    assert (wanted.sha1, wanted.ext, wanted.life) == (SHA1, "mp4", 60)
    for body in ({"hash": SHA1, "life": "soon"}, {"hash": SHA1, "ext": "../X"},
                 {"hash": SHA1, "ext": 5}, {"hash": "xyz"}):
        with pytest.raises(InvalidInput):
            _parse(body, public=True)
