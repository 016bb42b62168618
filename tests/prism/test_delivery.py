"""Delivery: purchased and static redirects to signed URLs on available stores."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from stretchfs.prism.delivery import redirect_query, referrer_allowed
from stretchfs.wire.signing import content_path, delivery_secret, verify
from tests.helpers import CLUSTER_KEY
from tests.prism.harness import make_prism

H1 = "c" * 40
H2 = "d" * 40


def _setup(master) -> None:
    master.add_content(H1, "mp4", 100, ["store1", "store2"])
    master.add_content(H2, "jpg", 50, ["store3"])


def _purchase(prism, sha1=H1, ext="mp4", referrer=None, life=3600) -> str:
    row = prism.master.add_purchase(sha1, ext, life=life, referrer=referrer)
    prism.pump(0.1)
    return row["token"]


def test_purchased_delivery_redirects_to_a_signed_store_url(tmp_path) -> None:
    """GET /<token>/<file> answers 302 to a store holding the content, signed for it."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism)
    code, _, headers = prism.call("GET", "/{}/video.mp4".format(token), token=None)
    assert code == 302
    location = headers.getRawHeaders(b"location")[0].decode()
    parts = urlsplit(location)
    assert parts.scheme == "http" and parts.hostname in ("10.0.0.1", "10.0.0.2")
    assert parts.path == content_path(H1, "mp4")
    query = parse_qs(parts.query)
    assert verify(delivery_secret(CLUSTER_KEY), parts.path, query["expires"][0],
                  query["md5"][0], prism.clock.seconds())
    assert query["start"] == ["0"]
    assert "?" not in parts.query and "null" not in location
    assert prism.call("HEAD", "/{}/video.mp4".format(token), token=None)[0] == 302
    prism.stop()


def test_successive_deliveries_spread_over_the_copies(tmp_path) -> None:
    """Repeated requests for one purchase go to every available copy in turn."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism)
    hosts = set()
    for _ in range(4):
        _, _, headers = prism.call("GET", "/{}/v.mp4".format(token), token=None)
        hosts.add(urlsplit(headers.getRawHeaders(b"location")[0].decode()).hostname)
    assert hosts == {"10.0.0.1", "10.0.0.2"}
    prism.stop()


def test_delivery_never_redirects_to_an_unavailable_store(tmp_path) -> None:
    """A store the ping net marked down is skipped; with no copy left the answer is 503."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism)
    prism.service.peers.set_available("store1", False)
    for _ in range(5):
        code, _, headers = prism.call("GET", "/{}/v.mp4".format(token), token=None)
        assert code == 302
        assert urlsplit(headers.getRawHeaders(b"location")[0].decode()).hostname == "10.0.0.2"
    prism.service.peers.set_available("store2", False)
    code, body, _ = prism.call("GET", "/{}/v.mp4".format(token), token=None)
    assert code == 503 and "error" in body
    prism.stop()


@pytest.mark.parametrize("query,expected", [
    ("", "start=0"), ("?", "start=0"), ("?a=1", "a=1&start=0"), ("?start=5", "start=5"),
    ("?html5=1", "html5=1"), ("?a=1&start=2", "a=1&start=2")])
def test_query_string_rule(tmp_path, query: str, expected: str) -> None:
    """The client's query is kept and start=0 added for video unless start/html5 is present."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism)
    _, _, headers = prism.call("GET", "/{}/v.mp4{}".format(token, query), token=None)
    location = headers.getRawHeaders(b"location")[0].decode()
    tail = location.split("&expires=", 1)[1].split("&", 1)
    assert tail[1] == expected
    assert "??" not in location and "null" not in location
    prism.stop()


def test_no_start_for_non_video(tmp_path) -> None:
    """Images get no start=0 and no trailing separator."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism, H2, "jpg")
    _, _, headers = prism.call("GET", "/{}/p.jpg".format(token), token=None)
    location = headers.getRawHeaders(b"location")[0].decode()
    assert "start=" not in location and not location.endswith("&")
    prism.stop()


def test_forwarded_proto_sets_the_scheme(tmp_path) -> None:
    """X-Forwarded-Proto (or X-Forwarded-Protocol) https gives an https redirect."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism)
    for header in ("X-Forwarded-Proto", "X-Forwarded-Protocol"):
        _, _, headers = prism.call("GET", "/{}/v.mp4".format(token), token=None,
                                   headers={header: "https"})
        assert headers.getRawHeaders(b"location")[0].startswith(b"https://")
    prism.stop()


def test_unknown_token_is_404_only_after_asking_the_master(tmp_path) -> None:
    """A token in neither mirror nor master is 404; the master was asked."""
    prism = make_prism(tmp_path, prefill=_setup)
    code, body, _ = prism.call("GET", "/{}/v.mp4".format("Z" * 64), token=None)
    assert code == 404 and body["error"] == "purchase not found"
    assert "get_purchase" in prism.master.calls
    prism.stop()


def test_token_missing_locally_but_known_to_the_master_is_delivered(tmp_path) -> None:
    """A purchase the feed has not brought yet is found through the master (no false 404)."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = "Q" * 64
    prism.master.purchases[token] = {"token": token, "hash": H1, "ext": "mp4", "life": 60,
                                     "expires": prism.clock.seconds() + 60, "referrer": []}
    code, _, _ = prism.call("GET", "/{}/v.mp4".format(token), token=None)
    assert code == 302
    prism.stop()


def test_token_miss_with_master_down_is_503(tmp_path) -> None:
    """With the master down, a local miss answers 503 while local hits still redirect."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism)
    prism.network.down.add("master")
    assert prism.call("GET", "/{}/v.mp4".format(token), token=None)[0] == 302
    assert prism.call("GET", "/{}/v.mp4".format("Y" * 64), token=None)[0] == 503
    prism.stop()


def _signed_expiry(headers) -> int:
    location = headers.getRawHeaders(b"location")[0].decode()
    return int(parse_qs(urlsplit(location).query)["expires"][0])


def test_signed_url_of_a_purchase_never_outlives_it(tmp_path) -> None:
    """A 2 s purchase yields a store URL that expires with it: from the mirror, from the
    master, and when the copy is found only on a second look."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism, life=2)
    deadline = prism.master.purchases[token]["expires"]
    code, _, headers = prism.call("GET", "/{}/v.mp4".format(token), token=None)
    assert code == 302 and _signed_expiry(headers) <= deadline
    remote = "R" * 64
    prism.master.purchases[remote] = dict(prism.master.purchases[token], token=remote)
    code, _, headers = prism.call("GET", "/{}/v.mp4".format(remote), token=None)
    assert code == 302 and "get_purchase" in prism.master.calls
    assert _signed_expiry(headers) <= deadline
    prism.service.peers.set_available("store1", False)
    prism.service.peers.set_available("store2", False)
    prism.master.inventory[H1] = dict(prism.master.inventory[H1],
                                      stores=["store1", "store2", "store3"])  # not fed yet
    code, _, headers = prism.call("GET", "/{}/v.mp4".format(token), token=None)
    assert code == 302 and _signed_expiry(headers) <= deadline
    prism.stop()


def test_signed_url_keeps_delivery_life_when_the_purchase_lasts_longer(tmp_path) -> None:
    """A purchase outliving delivery_life, and a static link, are signed for delivery_life."""
    prism = make_prism(tmp_path, prefill=_setup, extra="delivery_life = 600\n")
    token = _purchase(prism, life=3600)
    now = prism.clock.seconds()
    assert _signed_expiry(prism.call("GET", "/{}/v.mp4".format(token), token=None)[2]) \
        == int(now + 600)
    assert _signed_expiry(prism.call("GET", "/static/{}/x.jpg".format(H2), token=None)[2]) \
        == int(now + 600)
    prism.stop()


def test_expired_purchase_is_404(tmp_path) -> None:
    """A purchase past its expiry is refused at read time."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism, life=10)
    assert prism.call("GET", "/{}/v.mp4".format(token), token=None)[0] == 302
    prism.clock.advance(11)
    assert prism.call("GET", "/{}/v.mp4".format(token), token=None)[0] == 404
    prism.stop()


def test_referrer_check(tmp_path) -> None:
    """A purchase with referrer patterns needs a matching Referer host, else 403."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism, referrer=["example.com"])
    path = "/{}/v.mp4".format(token)
    assert prism.call("GET", path, token=None)[0] == 403
    assert prism.call("GET", path, token=None,
                      headers={"Referer": "https://evil.com/example.com"})[0] == 403
    assert prism.call("GET", path, token=None,
                      headers={"Referer": "https://www.example.com/page"})[0] == 302
    prism.stop()


def test_referrer_patterns_are_not_regexes() -> None:
    """Patterns match hosts literally (with subdomains), never as regular expressions."""
    assert referrer_allowed(("example.com",), "http://example.com/x")
    assert referrer_allowed(("*.example.com",), "http://a.example.com/")
    assert not referrer_allowed(("*.example.com",), "http://example.com/")
    assert not referrer_allowed(("ex.mple.com",), "http://exemple.com/")
    assert not referrer_allowed(("(a+)+$",), "http://aaaaaaaaaaaaaaaaaaaaaaaaaaa!/")
    assert referrer_allowed(("http://Example.com/path",), "http://example.com/")
    assert referrer_allowed((), None)
    assert not referrer_allowed(("example.com",), "not a url")


def test_redirect_query_helper() -> None:
    """redirect_query joins the parts with single ampersands."""
    assert redirect_query("md5=a&expires=1", "", "mp4", ("mp4",)) == "md5=a&expires=1&start=0"
    assert redirect_query("md5=a&expires=1", "x=1", "jpg", ("mp4",)) == "md5=a&expires=1&x=1"


def test_static_redirects_and_refuses_media(tmp_path) -> None:
    """/static/<hash>/<file> redirects for images, 403 for deny_static_types, 404 unknown."""
    prism = make_prism(tmp_path, prefill=_setup)
    code, _, headers = prism.call("GET", "/static/{}/p.jpg".format(H2), token=None)
    assert code == 302
    assert urlsplit(headers.getRawHeaders(b"location")[0].decode()).hostname == "10.0.0.3"
    assert prism.call("GET", "/static/{}/v.mp4".format(H1), token=None)[0] == 403
    assert prism.call("GET", "/static/{}/v.jpg".format(H1), token=None)[0] == 403
    assert prism.call("GET", "/static/{}/x.jpg".format("e" * 40), token=None)[0] == 404
    assert prism.call("GET", "/static/nothex/x.jpg", token=None)[0] == 404
    prism.stop()


def test_malformed_token_is_404_without_asking_the_master(tmp_path) -> None:
    """A token that cannot be a purchase token answers 404 at once."""
    prism = make_prism(tmp_path)
    assert prism.call("GET", "/short/x.mp4", token=None)[0] == 404
    assert "get_purchase" not in prism.master.calls
    prism.stop()


@pytest.mark.parametrize("length", [16, 63, 65, 128])
def test_token_of_the_wrong_length_is_404_not_503(tmp_path, length: int) -> None:
    """A token path of any length but 64 answers 404 at once, the master never asked."""
    prism = make_prism(tmp_path, prefill=_setup)
    code, body, _ = prism.call("GET", "/{}/v.mp4".format("A" * length), token=None)
    assert code == 404 and body["error"] == "purchase not found"
    assert "get_purchase" not in prism.master.calls
    prism.stop()


def test_other_paths_still_reach_klein(tmp_path) -> None:
    """Two-segment API paths and unknown paths are answered by the API, not delivery."""
    prism = make_prism(tmp_path)
    assert prism.call("GET", "/ping", token=None)[1] == {"pong": "pong"}
    assert prism.call("GET", "/user/login", token=None)[0] == 405
    assert prism.call("GET", "/a/b/c", token=None)[0] == 404
    prism.stop()


def test_delivery_answers_are_counted(tmp_path) -> None:
    """/metrics counts delivery answers by status code."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism)
    prism.call("GET", "/{}/v.mp4".format(token), token=None)
    prism.call("GET", "/static/{}/v.mp4".format(H1), token=None)
    _, text, _ = prism.call("GET", "/metrics", token=None)
    text = text.decode() if isinstance(text, bytes) else str(text)
    assert 'stretchfs_prism_deliveries_total{code="302"} 1.0' in text
    assert 'stretchfs_prism_deliveries_total{code="403"} 1.0' in text
    prism.stop()


def test_purchase_naming_another_extension_still_reaches_the_stored_file(tmp_path) -> None:
    """A purchase made with a wrong ext redirects to the file as stored (no dead URL)."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism, H2, "mp4")
    for _ in range(2):  # local fast path, then the same answer again
        code, _, headers = prism.call("GET", "/{}/p.mp4".format(token), token=None)
        assert code == 302
        location = urlsplit(headers.getRawHeaders(b"location")[0].decode())
        assert location.path == content_path(H2, "jpg")
    prism.stop()


def test_copies_the_mirror_does_not_know_yet_are_found_before_a_503(tmp_path) -> None:
    """When every store the mirror names is down, a copy the master already knows (or a
    store already holds) is delivered instead of a 503."""
    prism = make_prism(tmp_path, prefill=_setup)
    token = _purchase(prism)
    prism.service.peers.set_available("store1", False)
    prism.service.peers.set_available("store2", False)
    prism.master.inventory[H1] = dict(prism.master.inventory[H1],
                                      stores=["store1", "store2", "store3"])  # not fed yet
    code, _, headers = prism.call("GET", "/{}/v.mp4".format(token), token=None)
    assert code == 302
    assert urlsplit(headers.getRawHeaders(b"location")[0].decode()).hostname == "10.0.0.3"
    prism.master.inventory[H1] = dict(prism.master.inventory[H1], stores=["store1", "store2"])
    prism.stores["store3"].files[H1] = b"repaired"
    prism.stores["store3"].exts[H1] = "mp4"
    code, _, headers = prism.call("GET", "/{}/v.mp4".format(token), token=None)
    assert code == 302
    assert urlsplit(headers.getRawHeaders(b"location")[0].decode()).hostname == "10.0.0.3"
    prism.stop()


def test_a_local_miss_asks_the_master_once(tmp_path) -> None:
    """Content the mirror lacks, whose copies the master names are all down, is asked of
    the master once and then found on the stores."""
    prism = make_prism(tmp_path, prefill=_setup)
    h3 = "e" * 40
    token = _purchase(prism, h3, "jpg")
    prism.master.inventory[h3] = {"hash": h3, "ext": "jpg", "size": 3, "stores": ["store1"]}
    prism.service.peers.set_available("store1", False)
    prism.stores["store3"].files[h3] = b"abc"
    prism.stores["store3"].exts[h3] = "jpg"
    asked = len(prism.master.calls)
    code, _, headers = prism.call("GET", "/{}/p.jpg".format(token), token=None)
    assert code == 302 and b"10.0.0.3" in headers.getRawHeaders(b"location")[0]
    assert len([call for call in prism.master.calls[asked:] if "lookup" in call]) == 1
    prism.stop()
