"""The Judge on its own: votes from the prober's observations, self-suspicion, fallback."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from stretchfs.config import PingSettings
from stretchfs.pingnet.judge import Judge
from stretchfs.pingnet.metrics import PingMetrics
from stretchfs.pingnet.observers import Rotation
from stretchfs.pingnet.peers import PeerRecord, Peers
from tests.fakes import FakeRedisStore
from tests.pingnet import tallymodel

NAMES = ["n1", "n2", "n3", "n4", "n5"]


def _judge(clock) -> tuple[Judge, FakeRedisStore]:
    peers = Peers(self_name="n1")
    peers.set_registry([PeerRecord(name=n, role="store", host="10.0.0.1", port=1, ping_port=2)
                        for n in NAMES])
    redis = tallymodel.install(FakeRedisStore(clock))
    judge = Judge(PingSettings(), self_name="n1", peers=peers, redis=redis,
                  redis_prefix="sfs:", clock=clock, metrics=PingMetrics(CollectorRegistry()),
                  rotation=Rotation(10, 120.0, 5.0))
    return judge, redis


def test_votes_follow_failing_peers_unless_suspect_or_silent(clock) -> None:
    """The judge wants votes against the failing peers, none while it cannot reach most
    of its peers (self-suspicion) and none while the node is silent."""
    judge, _redis = _judge(clock)
    targets = NAMES[1:]
    judge.observe(targets, {"n2"}, set(), False)
    assert judge.ballot.wanted == {"n2"} and not judge.self_suspect
    judge.observe(targets, {"n2"}, {"n3", "n4"}, False)
    assert judge.self_suspect and judge.ballot.wanted == set()
    judge.observe(targets, {"n2"}, set(), False)
    assert not judge.self_suspect and judge.ballot.wanted == {"n2"}
    judge.observe(targets, {"n2"}, set(), True)
    assert judge.ballot.wanted == set()


def test_ballot_box_down_means_own_observations_decide(clock) -> None:
    """A tally that cannot reach Redis falls back and marks the failing peer down itself."""
    judge, redis = _judge(clock)
    judge.observe(NAMES[1:], {"n3"}, set(), False)
    assert judge.peers.is_available("n3") and not judge.fallback  # no verdict before a tally
    redis.down = True
    judge.tally()
    assert judge.fallback
    assert not judge.peers.is_available("n3") and judge.peers.is_available("n2")
