"""The observer assignment: exactly K observers, rotation, small clusters, boundaries."""

from __future__ import annotations

import itertools
from collections import Counter

from stretchfs.pingnet.observers import Rotation

NAMES = {"n{:02d}".format(i): "local" for i in range(40)}


def _first(size: int) -> dict[str, str]:
    return dict(list(NAMES.items())[:size])


def test_every_member_has_exactly_k_observers_and_none_observes_itself() -> None:
    """Mid-epoch each member probes K others and is probed by exactly K, never by itself."""
    rotation = Rotation(k=10, rotate_seconds=120.0, grace_seconds=5.0)
    now = 1_700_000_060.0
    assert len(rotation.epochs(now)) == 1
    observed = Counter()
    for name in NAMES:
        targets = rotation.targets(NAMES, name, now)
        assert len(targets) == 10 and name not in targets
        observed.update(targets)
        for target in targets:
            assert name in rotation.electorates(NAMES, target, now)[0]
    assert set(observed.values()) == {10} and len(observed) == len(NAMES)
    assert all(len(rotation.electorates(NAMES, n, now)[0]) == 10 for n in NAMES)


def test_small_clusters_observe_all_pairs() -> None:
    """With N <= K + 1 every member probes every other, in every epoch."""
    rotation = Rotation(k=10, rotate_seconds=120.0, grace_seconds=5.0)
    for size in (1, 2, 3, 11):
        names = _first(size)
        for now in (1_700_000_000.0, 1_700_000_500.0):
            for name in names:
                assert rotation.targets(names, name, now) == [n for n in names if n != name]


def test_rotation_exercises_every_pair() -> None:
    """Over enough epochs every ordered pair of members has been observer and target."""
    rotation = Rotation(k=4, rotate_seconds=10.0, grace_seconds=1.0)
    names = _first(16)
    seen = set()
    for epoch in range(200):
        now = epoch * 10.0 + 5.0
        for name in names:
            seen.update((name, t) for t in rotation.targets(names, name, now))
    assert seen == {(a, b) for a, b in itertools.permutations(names, 2)}


def test_boundary_holds_both_epochs() -> None:
    """Within the grace of a boundary a node probes the targets of both epochs, and the
    electorates of both epochs count; outside it only one."""
    rotation = Rotation(k=3, rotate_seconds=100.0, grace_seconds=5.0)
    names = _first(12)
    before, after = rotation.targets(names, "n00", 90.0), rotation.targets(names, "n00", 110.0)
    near = rotation.targets(names, "n00", 98.0)
    assert set(near) == set(before) | set(after)
    assert rotation.electorates(names, "n00", 102.0) == [
        rotation.electorates(names, "n00", 90.0)[0], rotation.electorates(names, "n00", 110.0)[0]]


def test_members_not_in_the_registry_observe_and_are_observed_by_nobody() -> None:
    """An unknown name gets no targets and no electorate."""
    rotation = Rotation(k=3, rotate_seconds=100.0, grace_seconds=5.0)
    assert rotation.targets(_first(5), "stranger", 50.0) == []
    assert rotation.electorates(_first(5), "stranger", 50.0) == []


def _sites(**sizes: int) -> dict[str, str]:
    return {"{}{:02d}".format(site, i): site for site, size in sizes.items()
            for i in range(size)}


def test_observers_are_drawn_inside_the_members_site() -> None:
    """With sites set, every member is observed by min(K, site size - 1) members of its
    own site and probes only members of its own site, at any time of an epoch."""
    members = _sites(a=12, b=12, c=3)
    rotation = Rotation(k=4, rotate_seconds=100.0, grace_seconds=5.0)
    for now in (50.0, 99.0, 101.0, 350.0):
        for name, site in members.items():
            for electorate in rotation.electorates(members, name, now):
                assert len(electorate) == (2 if site == "c" else 4)
                assert {members[o] for o in electorate} == {site}
            assert {members[t] for t in rotation.targets(members, name, now)} == {site}
    mid = rotation.targets(members, "c00", 50.0)
    assert mid == ["c01", "c02"]


def test_a_member_alone_in_its_site_is_observed_by_k_members_of_the_others() -> None:
    """A site of one member has nobody inside to observe it: K members of the other
    sites do, so it is still watched; everyone else keeps in-site observers."""
    members = _sites(a=8, b=8, z=1)
    rotation = Rotation(k=4, rotate_seconds=100.0, grace_seconds=5.0)
    [electorate] = rotation.electorates(members, "z00", 50.0)
    assert len(electorate) == 4 and "z00" not in electorate
    assert all("z00" in rotation.targets(members, o, 50.0) for o in electorate)
    assert rotation.targets(members, "z00", 50.0) == []
    for name in members:
        if name != "z00":
            [mine] = rotation.electorates(members, name, 50.0)
            assert {members[o] for o in mine} == {members[name]}
