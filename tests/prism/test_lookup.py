"""The lookup chain mirror -> master -> stores (stretchfs/prism/lookup.py), on a Clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from stretchfs import errors
from stretchfs.prism.lookup import MASTER_LOOKUP_BATCH, PROBE_BURST, ContentLookup
from stretchfs.prism.mirror import InventoryMirror, InventoryRecord
from tests.helpers import result_of

H1, H2, H3 = "1" * 40, "2" * 40, "3" * 40


class _Master:
    """lookup_many from a dict, or failing with `failure`."""

    def __init__(self, rows: dict[str, Any] | None = None) -> None:
        self.rows = rows or {}
        self.failure: Exception | None = None
        self.batches: list[list[str]] = []

    async def lookup_many(self, hashes: list[str]) -> dict[str, Any]:
        self.batches.append(list(hashes))
        if self.failure is not None:
            raise self.failure
        return {sha1: self.rows.get(sha1) for sha1 in hashes}


class _Probe:
    """The stores' holdings, recording every probe."""

    def __init__(self, held: dict[str, InventoryRecord] | None = None) -> None:
        self.held = held or {}
        self.asked: list[list[str]] = []

    async def holders(self, hashes: list[str]) -> dict[str, InventoryRecord]:
        self.asked.append(list(hashes))
        return {sha1: self.held[sha1] for sha1 in hashes if sha1 in self.held}


def _lookup(master: _Master, probe: _Probe, mirror: InventoryMirror | None = None,
            clock: Clock | None = None) -> ContentLookup:
    mirror = mirror if mirror is not None else InventoryMirror()
    return ContentLookup(inventory=lambda: mirror, master=master, probe=probe,
                         clock=clock or Clock())


def _find(lookup: ContentLookup, hashes: list[str], **kwargs: Any) -> Any:
    return result_of(ensureDeferred(lookup.find(hashes, **kwargs)))


def _failure(lookup: ContentLookup, hashes: list[str], **kwargs: Any) -> Any:
    failures: list[Any] = []
    ensureDeferred(lookup.find(hashes, **kwargs)).addErrback(failures.append)
    assert failures, "expected a failure"
    return failures[0].value


def test_each_step_answers_what_the_previous_ones_lack() -> None:
    """Mirror hits stay local, misses go to the master, what it lacks to the stores."""
    mirror = InventoryMirror()
    mirror.set_row(H1, "mp4", 10, ["s1"])
    master = _Master({H2: {"hash": H2, "ext": "jpg", "size": 5, "stores": ["s2"]}})
    probe = _Probe({H3: InventoryRecord("png", 7, ("s3",))})
    found = _find(_lookup(master, probe, mirror), [H1, H2, H3, "4" * 40])
    assert found == {H1: ("mp4", 10, ("s1",)), H2: ("jpg", 5, ("s2",)),
                     H3: ("png", 7, ("s3",)), "4" * 40: None}
    assert master.batches == [[H2, H3, "4" * 40]] and probe.asked == [[H3, "4" * 40]]


def test_the_master_is_asked_in_batches() -> None:
    """Misses go to the master MASTER_LOOKUP_BATCH at a time, the stores once for all."""
    master, probe = _Master(), _Probe()
    hashes = ["{:040x}".format(n) for n in range(2 * MASTER_LOOKUP_BATCH + 1)]
    _find(_lookup(master, probe), hashes)
    assert [len(batch) for batch in master.batches] == [MASTER_LOOKUP_BATCH,
                                                       MASTER_LOOKUP_BATCH, 1]
    assert probe.asked == [hashes]


def test_a_miss_the_master_cannot_confirm_is_a_503() -> None:
    """With the master unreachable or failing, a miss is NotReady and no store is asked."""
    master, probe = _Master(), _Probe()
    master.failure = errors.PeerUnavailable("down")
    assert isinstance(_failure(_lookup(master, probe), [H1]), errors.NotReady)
    master.failure = errors.UpstreamError(500, b"")
    assert isinstance(_failure(_lookup(master, probe), [H1]), errors.NotReady)
    assert probe.asked == []


def test_an_unusable_record_asks_the_master_once_then_the_stores() -> None:
    """A record the caller cannot use goes on to the master and to the stores, each once;
    a master failure then only means no news."""
    mirror = InventoryMirror()
    mirror.set_row(H1, "mp4", 10, ["down1"])
    master = _Master({H1: {"hash": H1, "ext": "mp4", "size": 10, "stores": ["down2"]}})
    probe = _Probe()

    def usable(record: InventoryRecord) -> bool:
        return "up" in record.stores

    found = _find(_lookup(master, probe, mirror), [H1], usable=usable)
    assert found[H1].stores == ("down2",)  # the last record seen
    assert len(master.batches) == 1 and probe.asked == [[H1]]
    probe.held[H1] = InventoryRecord("mp4", 10, ("up",))
    master.failure = errors.PeerUnavailable("down")
    assert _find(_lookup(master, probe, mirror), [H1], usable=usable)[H1].stores == ("up",)


def test_limited_callers_probe_the_stores_at_a_rationed_rate() -> None:
    """Limited misses probe PROBE_BURST times, then answer 503 until the clock refills."""
    clock = Clock()
    master, probe = _Master(), _Probe()
    lookup = _lookup(master, probe, clock=clock)
    for _ in range(PROBE_BURST):
        assert _find(lookup, [H1], limited=True) == {H1: None}
    error = _failure(lookup, [H1], limited=True)
    assert isinstance(error, errors.NotReady) and "retry shortly" in str(error)
    assert len(probe.asked) == PROBE_BURST
    assert _find(lookup, [H1]) == {H1: None}  # unlimited callers are not rationed
    clock.advance(0.05)  # one probe's worth at 20 a second
    assert _find(lookup, [H1], limited=True) == {H1: None}
    assert isinstance(_failure(lookup, [H1], limited=True), errors.NotReady)


def test_a_limited_caller_out_of_probes_gets_the_record_it_saw() -> None:
    """Past the ration, a record already seen (no usable store) is answered, not a 503."""
    mirror = InventoryMirror()
    mirror.set_row(H1, "mp4", 10, ["down"])
    probe = _Probe()
    lookup = _lookup(_Master(), probe, mirror)
    for _ in range(PROBE_BURST + 1):
        found = _find(lookup, [H1], usable=lambda record: False, limited=True)
        assert found[H1].stores == ("down",)
    assert len(probe.asked) == PROBE_BURST


def test_find_one_is_not_found_for_content_that_is_nowhere() -> None:
    """find_one answers the record, or NotFound once master and stores were asked."""
    mirror = InventoryMirror()
    mirror.set_row(H1, "mp4", 10, ["s1"])
    lookup = _lookup(_Master(), _Probe(), mirror)
    assert result_of(ensureDeferred(lookup.find_one(H1))).ext == "mp4"
    failures: list[Any] = []
    ensureDeferred(lookup.find_one(H2)).addErrback(failures.append)
    with pytest.raises(errors.NotFound):
        failures[0].raiseException()
