"""A removed copy leaves the store's holdings at once but is still delivered for
`[store] remove_grace` seconds: a prism that redirected a user there just before
it learned of the removal (a trim, a drain) must not cause a 404."""

from __future__ import annotations

import json
import os

from stretchfs.store.layout import ContentStore
from stretchfs.store.publisher import PUBLISH_EVERY_SECONDS
from stretchfs.wire.signing import content_path, delivery_secret, signed_query
from tests.helpers import CLUSTER_KEY
from tests.store.harness import AUTH, FakeMaster, build, request, sha1_of, stop, stub_for

DATA = b"bytes a trim removes" * 300
SHA1 = sha1_of(DATA)
SECRET = delivery_secret(CLUSTER_KEY)
GRACE = 30.0


def _stored(tmp_path, clock, master=None):
    service = build(tmp_path, clock, master=master, store={"remove_grace": GRACE})
    stub = stub_for(service)
    assert request(stub, "PUT", "/content/put/{}.mp4".format(SHA1), data=DATA,
                   headers=AUTH)[0] == 201
    return service, stub


def _get(stub, clock, ext: str = "mp4"):
    path = content_path(SHA1, ext)
    url = "{}?{}".format(path, signed_query(SECRET, path, int(clock.seconds()) + 600))
    return request(stub, "GET", url)


def _remove(stub):
    code, _, body = request(stub, "POST", "/content/remove",
                            data=json.dumps({"hash": SHA1}).encode(), headers=AUTH)
    assert code == 200
    return json.loads(body)


def test_a_removed_copy_is_withdrawn_at_once_and_served_until_the_grace_ends(
        tmp_path, clock) -> None:
    """Removed: published, not found, not scanned, not in exists; a signed GET still gets
    the bytes until the grace ends, then 404 and the file is gone from the disk."""
    master = FakeMaster()
    service, stub = _stored(tmp_path, clock, master)
    assert _remove(stub)["removed"] == 1
    clock.advance(PUBLISH_EVERY_SECONDS)  # a second change within 50 ms waits its turn
    assert master.changes()[-1] == {"op": "remove", "hash": SHA1}
    assert service.content.store.find(SHA1) is None
    assert [row for row in service.content.store.scan() if row and row[0] == SHA1] == []
    code, _, body = request(stub, "POST", "/content/exists",
                            data=json.dumps({"hash": SHA1}).encode(), headers=AUTH)
    assert json.loads(body)[SHA1]["exists"] is False
    clock.advance(GRACE - 1)
    code, _, body = _get(stub, clock)
    assert code == 200 and body == DATA
    assert _get(stub, clock, ext="jpg")[0] == 200      # any extension, as for held content
    clock.advance(2)
    assert _get(stub, clock)[0] == 404
    assert _files_under(service.content.store.leaving_dir) == []
    stop(service)


def test_a_copy_stored_again_during_the_grace_outlives_it(tmp_path, clock) -> None:
    """A repair that copies the hash back within the grace keeps its copy after it."""
    service, stub = _stored(tmp_path, clock)
    _remove(stub)
    assert request(stub, "PUT", "/content/put/{}.mp4".format(SHA1), data=DATA,
                   headers=AUTH)[0] == 201
    clock.advance(GRACE + 1)
    assert service.content.store.find(SHA1) is not None
    assert _get(stub, clock)[0] == 200
    stop(service)


def test_stopping_ends_every_grace_and_a_restart_purges_leftovers(tmp_path, clock) -> None:
    """An acknowledged removal is never undone: a clean stop deletes what is set aside,
    and the start after a crash deletes what it left."""
    service, stub = _stored(tmp_path, clock)
    _remove(stub)
    leaving = service.content.store.leaving_dir
    stop(service)
    assert _files_under(leaving) == []
    # a crash leaves a file set aside: the next start removes it for good
    store = ContentStore(str(tmp_path / "crashed"))
    store.prepare()
    store.commit(_temp_with(store, DATA), SHA1, "mp4")
    assert [f.sha1 for f in store.set_aside(SHA1)] == [SHA1]
    assert _files_under(store.leaving_dir) != []
    ContentStore(store.root).prepare()
    assert _files_under(store.leaving_dir) == []


def _files_under(folder: str) -> list[str]:
    return [name for _, _, names in os.walk(folder) for name in names]


def _temp_with(store: ContentStore, data: bytes) -> str:
    path = store.new_temp_path()
    with open(path, "wb") as handle:
        handle.write(data)
    return path
