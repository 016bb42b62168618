"""Detail, exists and purchase routes: mirror first, master on a miss."""

from __future__ import annotations

import json

from tests.prism.fakes import OTHER_TOKEN, TOKEN
from tests.prism.harness import make_prism

H1 = "1" * 40
H2 = "2" * 40
H3 = "3" * 40


def _with_content(master) -> None:
    master.add_content(H1, "mp4", 100, ["store1", "store2"])


def test_detail_answers_the_sdk_record(tmp_path) -> None:
    """POST /content/detail {hash} answers the record with hash/sha1/ext/mimeType/size/map."""
    prism = make_prism(tmp_path, prefill=_with_content)
    code, body, _ = prism.call("POST", "/content/detail", {"hash": H1})
    assert code == 200
    assert body == {"hash": H1, "sha1": H1, "ext": "mp4", "mimeType": "video/mp4", "size": 100,
                    "exists": True, "count": 2, "map": ["store1", "store2"]}
    assert "lookup_many" not in prism.master.calls
    code, body, _ = prism.call("POST", "/content/detail", {"sha1": H1.upper()})
    assert code == 200 and body["hash"] == H1
    prism.stop()


def test_detail_of_unknown_hash_is_404_after_asking_the_master(tmp_path) -> None:
    """An unknown hash is confirmed by the master before the 404."""
    prism = make_prism(tmp_path)
    code, body, _ = prism.call("POST", "/content/detail", {"hash": H2})
    assert code == 404 and "error" in body
    assert "lookup_many" in prism.master.calls
    prism.stop()


def test_local_miss_known_to_the_master_is_found(tmp_path) -> None:
    """Content the feed has not brought yet is found through the master (no false 404)."""
    prism = make_prism(tmp_path)
    prism.master.inventory[H2] = {"hash": H2, "ext": "jpg", "size": 7, "stores": ["store3"]}
    code, body, _ = prism.call("POST", "/content/detail", {"hash": H2})
    assert code == 200 and body["exists"] is True and body["map"] == ["store3"]
    prism.stop()


def test_local_miss_with_master_down_is_503(tmp_path) -> None:
    """A miss cannot be confirmed while the master is down: 503, never 404."""
    prism = make_prism(tmp_path, prefill=_with_content)
    assert prism.call("POST", "/user/session/validate")[0] == 200  # session now cached
    prism.network.down.add("master")
    assert prism.call("POST", "/content/detail", {"hash": H1})[0] == 200
    assert prism.call("POST", "/content/detail", {"hash": H2})[0] == 503
    assert prism.call("POST", "/content/exists", {"hash": [H1, H2]})[0] == 503
    prism.stop()


def test_exists_bulk_and_single(tmp_path) -> None:
    """Exists answers a record (no 404 for unknown), or an object keyed by hash for a list."""
    prism = make_prism(tmp_path, prefill=_with_content)
    code, body, _ = prism.call("POST", "/content/exists", {"hash": H2})
    assert code == 200 and body["exists"] is False and body["count"] == 0
    code, body, _ = prism.call("POST", "/content/exists", {"hash": [H1, H2]})
    assert code == 200 and set(body) == {H1, H2}
    assert body[H1]["count"] == 2 and body[H2]["exists"] is False
    code, body, _ = prism.call("POST", "/content/detail", {"hash": [H1, H2]})
    assert code == 200 and body[H2]["exists"] is False
    prism.stop()


def test_bad_hash_input_is_400(tmp_path) -> None:
    """Missing, malformed or too many hashes answer 400."""
    prism = make_prism(tmp_path, extra="bulk_max = 2\n")
    for body in ({}, {"hash": "xyz"}, {"hash": 5}, {"hash": [H1, "nope"]},
                 {"hash": [H1, H2, H3]}):
        code, answer, _ = prism.call("POST", "/content/exists", body)
        assert code == 400 and "error" in answer, body
    prism.stop()


def test_purchase_create_detail_remove(tmp_path) -> None:
    """A purchase is created through the master, readable, and removable (SDK shapes)."""
    prism = make_prism(tmp_path, prefill=_with_content)
    code, body, _ = prism.call("POST", "/content/purchase",
                               {"hash": H1, "ext": "mp4", "referrer": ["example.com"],
                                "life": 60})
    assert code == 200
    assert {"token", "hash", "sha1", "ext", "life", "expires", "referrer", "ip",
            "sessionToken"} <= set(body)
    assert body["hash"] == body["sha1"] == H1 and body["life"] == 60
    assert body["sessionToken"] == TOKEN and body["referrer"] == ["example.com"]
    token = body["token"]
    code, detail, _ = prism.call("POST", "/content/purchase/detail", {"token": token})
    assert code == 200 and detail["token"] == token and detail["ext"] == "mp4"
    code, removed, _ = prism.call("POST", "/content/purchase/remove", {"token": token})
    assert code == 200 and removed == {"token": token, "count": 1,
                                       "success": "Purchase removed"}
    assert prism.call("POST", "/content/purchase/detail", {"token": token})[0] == 404
    code, removed, _ = prism.call("POST", "/content/purchase/remove", {"token": token})
    assert removed["count"] == 0
    prism.stop()


def test_purchase_of_unknown_content_is_404(tmp_path) -> None:
    """Purchasing content that exists nowhere answers 404 and creates nothing."""
    prism = make_prism(tmp_path)
    code, body, _ = prism.call("POST", "/content/purchase", {"hash": H3, "ext": "mp4"})
    assert code == 404 and prism.master.purchases == {}
    prism.stop()


def test_purchase_bad_input_is_400(tmp_path) -> None:
    """Bad ext, referrer, life or token answer 400 and change nothing."""
    prism = make_prism(tmp_path, prefill=_with_content)
    for body in ({"hash": H1, "ext": "../x"}, {"hash": H1, "referrer": [5]},
                 {"hash": H1, "life": -1}, {"hash": H1, "life": "soon"}, {"hash": [H1]}):
        assert prism.call("POST", "/content/purchase", body)[0] == 400, body
    assert prism.master.purchases == {}
    assert prism.call("POST", "/content/purchase/detail", {"token": 5})[0] == 400
    assert prism.call("POST", "/content/purchase/remove", {})[0] == 400
    prism.stop()


def test_malformed_purchase_token_answers_as_an_unknown_one(tmp_path) -> None:
    """Detail of a token that cannot exist is 404 and its remove counts 0, master never asked."""
    prism = make_prism(tmp_path, prefill=_with_content)
    for token in ("x", "a" * 63, "a" * 65, "a" * 128, "a" * 63 + "!"):
        code, body, _ = prism.call("POST", "/content/purchase/detail", {"token": token})
        assert code == 404 and body == {"error": "purchase not found"}, token
        code, body, _ = prism.call("POST", "/content/purchase/remove", {"token": token})
        assert code == 200 and body["count"] == 0, token
    assert "get_purchase" not in prism.master.calls
    prism.stop()


def test_purchase_defaults_ext_and_life(tmp_path) -> None:
    """Without ext and life the content's ext and [prism] purchase_life are used."""
    prism = make_prism(tmp_path, prefill=_with_content)
    code, body, _ = prism.call("POST", "/content/purchase", {"sha1": H1})
    assert code == 200 and body["ext"] == "mp4" and body["life"] == 7200.0
    prism.stop()


def test_mirror_routes_need_the_cluster_key(tmp_path) -> None:
    """/mirror/status and /mirror/inventory answer with the cluster key only, mirror-only."""
    from tests.helpers import CLUSTER_KEY

    prism = make_prism(tmp_path, prefill=_with_content)
    assert prism.call("GET", "/mirror/status", token=None)[0] == 401
    auth = {"Authorization": "Bearer " + CLUSTER_KEY}
    code, body, _ = prism.call("GET", "/mirror/status", token=None, headers=auth)
    assert code == 200 and body["inventory"]["entries"] == 1 and body["purchases"]["loaded"]
    prism.master.inventory[H2] = {"hash": H2, "ext": "jpg", "size": 7, "stores": ["store3"]}
    code, body, _ = prism.call("POST", "/mirror/inventory", {"hash": [H1, H2]}, token=None,
                               headers=auth)
    assert code == 200 and body == {H1: True, H2: False}
    assert prism.call("GET", "/pingnet/status", token=None)[0] != 404
    prism.stop()


def test_content_only_the_stores_know_yet_is_found(tmp_path) -> None:
    """Content a store holds but has not published yet (master lagging) is no 404."""
    prism = make_prism(tmp_path)
    prism.stores["store2"].files[H3] = b"abc"
    prism.stores["store2"].exts[H3] = "jpg"
    code, body, _ = prism.call("POST", "/content/detail", {"hash": H3})
    assert code == 200 and body["map"] == ["store2"] and body["ext"] == "jpg"
    code, body, _ = prism.call("POST", "/content/exists", {"hash": [H2, H3]})
    assert list(body) == [H2, H3] and body[H3]["exists"] and not body[H2]["exists"]
    code, purchase, _ = prism.call("POST", "/content/purchase", {"hash": H3})
    assert code == 200 and purchase["ext"] == "jpg"
    code, _, headers = prism.call("GET", "/static/{}/x.jpg".format(H3), token=None)
    assert code == 302 and b"10.0.0.2" in headers.getRawHeaders(b"location")[0]
    prism.stop()


def test_a_miss_while_a_store_does_not_answer_is_503_not_404(tmp_path) -> None:
    """A store that fails the probe may hold the only copy: the answer is 503 (retry),
    never a false 404 and never a 500; once every store answers, a real miss is 404."""
    prism = make_prism(tmp_path)
    prism.stores["store1"].mode = "error"
    prism.network.down.add("10.0.0.2")
    code, body, _ = prism.call("POST", "/content/detail", {"hash": H3})
    assert code == 503 and "did not answer" in body["error"]
    assert prism.call("POST", "/content/exists", {"hash": [H3]})[0] == 503
    prism.stores["store1"].mode = "ok"
    prism.network.down.discard("10.0.0.2")
    assert prism.call("POST", "/content/detail", {"hash": H3})[0] == 404
    prism.stop()


def test_static_store_probes_are_rationed(tmp_path) -> None:
    """Unauthenticated static misses probe the stores at most ~20 times a second."""
    prism = make_prism(tmp_path)
    calls = []
    send = prism.network.request

    def counting(method, url, **kwargs):
        if url == "http://10.0.0.1/content/exists":  # one per probe of the three stores
            calls.append(url)
        return send(method, url, **kwargs)

    prism.network.request = counting
    codes = [prism.call("GET", "/static/{:040x}/x.jpg".format(index), token=None)[0]
             for index in range(30)]
    assert len(calls) == 20
    # Past the budget nobody asked the stores: "retry" (503), not a possibly false 404.
    assert codes == [404] * 20 + [503] * 10
    prism.clock.advance(1.0)
    assert prism.call("GET", "/static/{}/x.jpg".format("f" * 40), token=None)[0] == 404
    assert len(calls) == 21
    prism.stop()


def test_purchases_belong_to_their_buyer(tmp_path) -> None:
    """Another user's detail and remove of a purchase answer as for an unknown token, leave
    it working, and never show the buyer's session token."""
    prism = make_prism(tmp_path, prefill=_with_content)
    code, bought, _ = prism.call("POST", "/content/purchase", {"hash": H1, "ext": "mp4"})
    assert code == 200 and bought["sessionToken"] == TOKEN
    token, unknown = bought["token"], "U" * 64
    prism.pump(0.1)
    answers = []
    for path in ("/content/purchase/detail", "/content/purchase/remove"):
        theirs = prism.call("POST", path, {"token": token}, token=OTHER_TOKEN)
        nobodys = prism.call("POST", path, {"token": unknown}, token=OTHER_TOKEN)
        assert theirs[0] == nobodys[0]
        assert json.dumps(theirs[1]).replace(token, unknown) == json.dumps(nobodys[1])
        answers.append(theirs)
    assert answers[0][:2] == (404, {"error": "purchase not found"})
    assert answers[1][:2] == (200, {"token": token, "count": 0, "success": "Purchase removed"})
    assert all(TOKEN not in json.dumps(body) for _, body, _ in answers)
    asked = prism.master.calls.count("get_purchase")
    assert prism.call("GET", "/{}/v.mp4".format(token), token=None)[0] == 302
    assert prism.master.calls.count("get_purchase") == asked  # still in this prism's mirror
    code, detail, _ = prism.call("POST", "/content/purchase/detail", {"token": token})
    assert code == 200 and detail["sessionToken"] == TOKEN and detail["hash"] == H1
    code, removed, _ = prism.call("POST", "/content/purchase/remove", {"token": token})
    assert removed["count"] == 1
    prism.stop()


def test_purchase_detail_from_the_mirror_checks_the_owner(tmp_path) -> None:
    """While the master is away the buyer still reads a purchase from the mirror; another
    user gets the answer of an unknown token."""
    prism = make_prism(tmp_path, prefill=_with_content)
    token = prism.master.add_purchase(H1, "mp4", owner="admin")["token"]
    for session in (TOKEN, OTHER_TOKEN):  # sessions validated before the outage
        prism.call("POST", "/user/session/validate", token=session)
    prism.pump(0.1)
    prism.network.down.add("master")
    code, mine, _ = prism.call("POST", "/content/purchase/detail", {"token": token})
    assert code == 200 and mine["token"] == token and mine["sessionToken"] == TOKEN
    theirs = prism.call("POST", "/content/purchase/detail", {"token": token},
                        token=OTHER_TOKEN)
    nobodys = prism.call("POST", "/content/purchase/detail", {"token": "U" * 64},
                         token=OTHER_TOKEN)
    assert theirs[:2] == nobodys[:2] and theirs[0] == 503
    prism.stop()
