"""PingNet on a simulated network: detection, withdrawal, expiry, fallback, self-suspicion."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from twisted.logger import capturedLogs

from stretchfs.config import PingSettings
from stretchfs.pingnet.ballot import tally_command
from stretchfs.pingnet.judge import FULL_READ_SECONDS
from stretchfs.pingnet.keys import votes_key
from stretchfs.pingnet.packet import (
    DROP_REASONS,
    NO_TARGET,
    PING,
    PING_REQ,
    PONG,
    RELAY_ACK,
    Packet,
    decode,
    derive_key,
    encode,
    node_id,
)
from stretchfs.pingnet.peers import PeerRecord
from tests.helpers import CLUSTER_KEY
from tests.pingnet.simnet import SimCluster


@pytest.fixture
def cluster(clock):
    """Five started nodes, settled for 2 s; stopped afterwards."""
    sim = SimCluster(clock, 5)
    sim.start()
    sim.run(2.0)
    yield sim
    sim.stop()


def _voters(sim: SimCluster, target: str) -> set[bytes]:
    return set(sim.redis.data.get(votes_key("sfs:", target).encode(), {}))


def test_healthy_cluster_marks_nobody_down(cluster) -> None:
    """With every node answering, no node votes and no verdict is down."""
    cluster.run(5.0)
    assert all(not cluster.down_in(n) for n in cluster.nodes)
    assert not any(k.startswith(b"sfs:ping:votes:") for k in cluster.redis.data)


def test_votes_only_after_misses_consecutive_lost_rounds(cluster) -> None:
    """A silent peer gets no vote before `misses` lost rounds and one from every survivor after."""
    cluster.freeze("n3")
    cluster.run(0.5)
    assert _voters(cluster, "n3") == set()
    cluster.run(1.5)
    assert _voters(cluster, "n3") == {b"n1", b"n2", b"n4", b"n5"}
    for name in ("n1", "n2"):
        row = next(r for r in cluster.nodes[name].status()["peers"] if r["name"] == "n3")
        assert row["misses"] >= 3 and row["my_vote"]


def test_survivors_mark_a_silent_peer_down_within_two_seconds(cluster) -> None:
    """Every survivor marks a crashed peer unavailable within 2 s, and nobody else."""
    cluster.freeze("n3")
    cluster.run(2.0)
    for name in ("n1", "n2", "n4", "n5"):
        assert cluster.down_in(name) == {"n3"}


def test_pong_withdraws_the_vote_at_once(cluster) -> None:
    """A peer that answers again has every vote withdrawn and is available within 0.5 s."""
    cluster.freeze("n3")
    cluster.run(2.5)
    assert _voters(cluster, "n3")
    cluster.thaw("n3")
    cluster.run(0.5)
    assert _voters(cluster, "n3") == set()
    assert all(not cluster.down_in(n) for n in cluster.nodes)


def test_dead_voters_votes_expire(clock) -> None:
    """A peer held down by votes whose voters stopped refreshing them is readmitted once
    they expire (vote_ttl), by the recount of an observer that hears from it."""
    sim = SimCluster(clock, 3, settings=PingSettings(vote_ttl=4.0))
    sim.start()
    sim.run(1.0)
    for voter in ("n1", "n3"):  # two planted votes: the voters then "die" (never refresh)
        sim.redis.execute(*tally_command("sfs:", "n2", voter, "cast", clock.seconds(), 4.0,
                                         [["n1", "n3"]]))
    sim.run(0.5)
    assert "n2" in sim.down_in("n1")
    row = next(r for r in sim.nodes["n1"].status()["peers"] if r["name"] == "n2")
    assert row["voters"] == ["n1", "n3"] and row["needed"] == 2
    sim.run(3.0)
    assert "n2" in sim.down_in("n1")
    sim.run(2.5)
    assert all("n2" not in sim.down_in(n) for n in ("n1", "n3"))
    sim.stop()


def test_redis_outage_falls_back_to_own_observations_and_logs_once(cluster) -> None:
    """With Redis down, a node decides from its own probes and logs the outage once."""
    with capturedLogs() as events:
        cluster.redis.down = True
        cluster.freeze("n3")
        cluster.run(3.0)
        assert cluster.down_in("n1") == {"n3"}
        assert cluster.nodes["n1"].judge.fallback
        cluster.redis.down = False
        cluster.run(1.0)
    outages = [e for e in events if e.get("event") == "pingnet_ballot"
               and e.get("node") == "n1"]
    assert [e["reachable"] for e in outages] == [False, True]
    assert not cluster.nodes["n1"].judge.fallback
    assert cluster.down_in("n1") == {"n3"}


def test_cut_off_node_suspects_itself_and_casts_no_vote(cluster) -> None:
    """A node that loses every peer at once votes against none of them."""
    for other in ("n1", "n2", "n4", "n5"):
        cluster.sever("n3", other)
    with capturedLogs() as events:
        cluster.run(3.0)
    assert cluster.nodes["n3"].judge.self_suspect
    assert not any(b"n3" in _voters(cluster, t) for t in ("n1", "n2", "n4", "n5"))
    assert [e["suspect"] for e in events
            if e.get("event") == "pingnet_self_suspect" and e.get("node") == "n3"] == [True]
    assert cluster.down_in("n1") == {"n3"}
    cluster.net.cut.clear()
    cluster.run(1.0)
    assert not cluster.nodes["n3"].judge.self_suspect


def test_indirect_probes_bridge_a_single_bad_path(cluster) -> None:
    """When only the path a-b is cut, relayed probes keep a from voting b down."""
    cluster.sever("n1", "n2")
    cluster.run(5.0)
    assert _voters(cluster, "n2") == set()
    assert all(not cluster.down_in(n) for n in cluster.nodes)


def test_no_false_verdicts_at_thirty_percent_loss(clock) -> None:
    """Random 30 % packet loss for 60 s marks no peer down."""
    sim = SimCluster(clock, 5)
    sim.net.loss = 0.3
    sim.start()
    sim.run(60.0, step=0.01)
    assert all(sim.nodes[n].judge.dampener.states[p].changes == 0
               for n in sim.nodes for p in sim.nodes[n].judge.dampener.states)
    sim.stop()


def test_a_stalled_node_does_not_count_its_own_stall_as_misses(cluster, clock) -> None:
    """Timeouts that fire long after their deadline (the process was stopped) are void."""
    clock.advance(3.0)  # every timer of every node fires 3 s late at once
    cluster.run(0.2)
    prober = cluster.nodes["n1"].prober
    assert all(prober.state_of(name).misses == 0 for name in prober.targets)
    assert not any(k.startswith(b"sfs:ping:votes:") for k in cluster.redis.data)


def test_gray_failure_node_is_held_out(clock) -> None:
    """A node frozen 2 s of every 2.5 s is taken out within 5 s and stays out."""
    sim = SimCluster(clock, 5)
    sim.start()
    sim.run(2.0)
    start = clock.seconds()
    taken_out = None
    for _ in range(24):  # 60 s of 2 s frozen / 0.5 s running
        sim.freeze("n3")
        sim.run(2.0)
        if taken_out is None and "n3" in sim.down_in("n1"):
            taken_out = clock.seconds() - start
        sim.thaw("n3")
        sim.run(0.5)
    assert taken_out is not None and taken_out <= 5.0
    assert "n3" in sim.down_in("n1")
    verdict = sim.nodes["n1"].judge.dampener.states["n3"]
    assert verdict.changes <= 3
    assert verdict.hold >= 30
    sim.stop()


def test_stop_service_leaves_no_timers(clock) -> None:
    """After stopService no delayed call remains and the UDP port is released."""
    sim = SimCluster(clock, 3)
    sim.start()
    sim.run(1.13)
    sim.stop()
    assert clock.getDelayedCalls() == [] or all(
        not c.active() for c in clock.getDelayedCalls())
    sim.run(0.1)
    assert clock.getDelayedCalls() == []
    assert sim.net.bound == {}


def test_bad_packets_are_dropped_counted_and_never_raise(cluster, clock) -> None:
    """Every kind of bad packet is dropped and counted by reason; the node keeps working."""
    node = cluster.nodes["n1"]
    key = derive_key(CLUSTER_KEY)
    good = Packet(kind=PING, sender=node_id("n2"), receiver=node_id("n1"), target=NO_TARGET,
                  seq=1, echo=0, stamp=clock.seconds())
    fresh = encode(key, replace(good, seq=int(clock.seconds() * 1e6) + 10**9))
    cases = {
        "truncated": encode(key, good)[:10],
        "oversized": encode(key, good) + b"!" * 100,
        "version": b"\x07" + encode(key, good)[1:],
        "kind": encode(key, good)[:1] + b"\x63" + encode(key, good)[2:],
        "forged": encode(derive_key("not-the-cluster-key-000"), good),
        "unknown_sender": encode(key, replace(good, kind=PONG, sender=node_id("stranger"))),
        "stale": encode(key, replace(good, stamp=clock.seconds() - 60)),
        "self": encode(key, replace(good, sender=node_id("n1"))),
        "wrong_receiver": encode(key, replace(good, receiver=node_id("n3"))),
        "replayed": fresh,
    }
    node.prober.datagramReceived(fresh, ("10.0.0.1", 9001))
    for data in cases.values():
        node.prober.datagramReceived(data, ("10.0.0.1", 9001))
    node.prober.datagramReceived(encode(key, replace(good, kind=PONG, stamp=float("nan"))),
                           ("10.0.0.1", 9001))
    for reason in cases:
        assert node.metrics.dropped.labels(reason=reason)._value.get() >= 1, reason
    cluster.run(2.0)
    assert all(not cluster.down_in(n) for n in cluster.nodes)


def test_registry_changes_join_and_leave_the_ping_net(cluster) -> None:
    """A peer removed from the registry is no longer probed; an inactive one is never down."""
    node = cluster.nodes["n1"]
    records = [r for r in cluster.records if r.name != "n5"]
    records = [replace(r, active=False) if r.name == "n4" else r for r in records]
    node.peers.set_registry(records)
    cluster.run(1.0)
    assert set(node.prober.targets) == {"n2", "n3"}
    newcomer = PeerRecord(name="n6", role="prism", host="10.0.0.1", port=1, ping_port=9100)
    node.peers.set_registry(records + [newcomer])
    cluster.run(2.0)
    assert "n6" in node.prober.targets
    assert node.status()["peers"][-1]["my_vote"]  # probed, unanswered: n1 votes it down


def test_ping_from_a_not_yet_known_member_is_answered(cluster, clock) -> None:
    """An authentic PING from a peer missing from our registry copy gets a PONG
    addressed to that peer."""
    node = cluster.nodes["n1"]
    key = derive_key(CLUSTER_KEY)
    ping = Packet(kind=PING, sender=node_id("newcomer"), receiver=node_id("n1"),
                  target=NO_TARGET, seq=int(clock.seconds() * 1e6) + 5, echo=0,
                  stamp=clock.seconds())
    transport = node.prober.transport
    before = len(transport.written)
    node.prober.datagramReceived(encode(key, ping), ("10.0.0.9", 9999))
    replies = transport.written[before:]
    assert [addr for _data, addr in replies] == [("10.0.0.9", 9999)]
    assert cluster.unknown_senders == ["n1"]
    assert decode(key, replies[0][0], node_id("newcomer")).echo == ping.seq


def test_no_call_goes_to_a_peer_the_verdict_marks_down(cluster) -> None:
    """Callers that pick targets through Peers.candidates never reach a downed peer."""
    cluster.freeze("n3")
    cluster.run(2.0)
    peers = cluster.nodes["n1"].peers
    called: list[str] = []
    for _ in range(50):
        for record in peers.candidates("store", exclude=["n1"]):
            called.append(record.name)
    assert "n3" not in called and {"n2", "n4", "n5"} <= set(called)
    assert not peers.is_available("n3")
    cluster.thaw("n3")
    cluster.run(0.5)
    assert peers.is_available("n3")


def test_each_pair_exchanges_one_ping_and_one_pong_per_interval(cluster) -> None:
    """The smaller name of a pair probes; the other answers and skips its own probe."""
    before = {name: node.metrics.sent_by_kind[PING]._value.get()
              for name, node in cluster.nodes.items()}
    cluster.run(10.0)
    sent = {name: node.metrics.sent_by_kind[PING]._value.get() - before[name]
            for name, node in cluster.nodes.items()}
    # n1 probes 4 peers, n2 3, ... n5 none: 20 rounds of 10 s
    assert sent == {"n1": 80, "n2": 60, "n3": 40, "n4": 20, "n5": 0}


def test_a_silent_smaller_peer_is_probed_by_the_other_side(cluster) -> None:
    """When the smaller-named peer stops pinging, the larger one probes and votes itself."""
    cluster.freeze("n1")
    cluster.run(2.0)
    for name in ("n2", "n3", "n4", "n5"):
        assert cluster.down_in(name) == {"n1"}


def test_probe_bookkeeping_stays_bounded_under_loss(clock) -> None:
    """Pending-probe tables do not grow with the number of rounds, even when packets are lost."""
    sim = SimCluster(clock, 5)
    sim.net.loss = 0.3
    sim.start()
    sim.run(20.0, step=0.01)
    node = sim.nodes["n1"]
    awaiting_pong, probe_seqs, relays = node.prober.pending()
    assert awaiting_pong <= 2 * 4 and probe_seqs <= 2 * 4
    assert relays <= 4 * 3
    sim.stop()


def test_a_packet_meant_for_one_node_is_dropped_at_every_other(cluster) -> None:
    """Every kind of genuine packet replayed to a third node is dropped there as
    `wrong_receiver` and changes nothing, while its real receiver accepted it."""
    cluster.sever("n1", "n2")  # so PING_REQ and RELAY_ACK packets flow too
    cluster.net.record()
    cluster.run(2.0)
    names = {cluster.addr(name): name for name in cluster.nodes}
    seen: dict[int, tuple[str, str, bytes]] = {}
    for src, dst, data in cluster.net.sent or []:
        seen.setdefault(data[1], (names[src], names[dst], data))
    assert set(seen) == {PING, PONG, PING_REQ, RELAY_ACK}
    # Their real receivers took every one of them: nothing dropped, nobody down.
    assert all(sum(node.metrics.dropped.labels(reason=r)._value.get() for r in DROP_REASONS)
               == 0 for node in cluster.nodes.values())
    assert all(not cluster.down_in(n) for n in cluster.nodes)
    for kind, (sender, receiver, data) in seen.items():
        bystander = next(n for n in cluster.nodes if n not in (sender, receiver))
        node = cluster.nodes[bystander]
        dropped = node.metrics.dropped.labels(reason="wrong_receiver")
        before = dropped._value.get(), node.metrics.received_by_kind[kind]._value.get()
        node.prober.datagramReceived(data, cluster.addr(sender))
        after = dropped._value.get(), node.metrics.received_by_kind[kind]._value.get()
        assert after == (before[0] + 1, before[1]), (kind, sender, receiver, bystander)


def test_a_node_whose_http_side_fails_is_voted_down_like_a_dead_one(cluster) -> None:
    """While a node's HTTP self-check fails it answers no ping and casts no vote, so every
    peer marks it down; once HTTP answers again it is available within 0.5 s."""
    cluster.nodes["n2"].judge.ballot.want({"n5"})  # a vote it held must be withdrawn
    cluster.nodes["n2"].set_http_ok(False)
    cluster.run(2.0)
    for name in ("n1", "n3", "n4", "n5"):
        assert cluster.down_in(name) == {"n2"}
    assert not any(b"n2" in _voters(cluster, t) for t in ("n1", "n3", "n4", "n5"))
    assert cluster.nodes["n2"].status()["http_ok"] is False
    cluster.nodes["n2"].set_http_ok(True)
    cluster.run(0.5)
    assert all(not cluster.down_in(n) for n in cluster.nodes)


def _big(clock, size: int, k: int, rotate: float = 120.0) -> SimCluster:
    sim = SimCluster(clock, size, settings=PingSettings(observers=k, rotate=rotate))
    sim.start()
    sim.run(2.0)
    return sim


def test_past_k_plus_one_nodes_each_probes_only_its_observed_peers(clock) -> None:
    """With N > K + 1 each node sends PINGs only to its K targets and every peer is
    pinged by exactly K observers per interval."""
    sim = _big(clock, 16, 4)
    sim.net.record()
    sim.run(1.0)
    key = derive_key(CLUSTER_KEY)
    pinged: dict[str, set[str]] = {}
    by_addr = {sim.addr(n): n for n in sim.nodes}
    for src, dst, data in sim.net.sent or []:
        packet = decode(key, data, node_id(by_addr[dst]))
        if packet.kind == PING:
            pinged.setdefault(by_addr[dst], set()).add(by_addr[src])
    assert {len(observers) for observers in pinged.values()} == {4}
    for node in sim.nodes.values():
        assert len(node.prober.targets) == 4
    sim.stop()


def test_observers_alone_put_a_silent_peer_down_for_everyone(clock) -> None:
    """A frozen node is held down by every survivor within 2 s, though only its K
    observers probe it, and it stays down across epoch boundaries."""
    sim = _big(clock, 16, 4, rotate=10.0)
    sim.freeze("n7")
    sim.run(2.0)
    survivors = [n for n in sim.nodes if n != "n7"]
    assert all(sim.down_in(n) == {"n7"} for n in survivors)
    for _ in range(24):  # across boundaries, checked every 0.5 s
        sim.run(0.5)
        assert all(sim.down_in(n) == {"n7"} for n in survivors)
    sim.thaw("n7")
    sim.run(1.0)
    assert all(not sim.down_in(n) for n in sim.nodes)
    sim.stop()


def test_no_false_verdicts_across_rotations_at_ten_percent_loss(clock) -> None:
    """Rotating observers on a lossy network never hold a live node down."""
    sim = _big(clock, 16, 4, rotate=5.0)
    sim.net.loss = 0.10
    for _ in range(40):
        sim.run(0.5)
        assert all(not sim.down_in(n) for n in sim.nodes)
    sim.stop()


def test_a_restarted_redis_whose_version_meets_ours_is_still_read(cluster) -> None:
    """After Redis lost its data and counted its version back up to the one a node last
    saw, the node still reads the new down hash within FULL_READ_SECONDS."""
    cluster.freeze("n3")
    cluster.run(2.0)
    assert cluster.down_in("n1") == {"n3"}
    cluster.thaw("n3")
    cluster.run(1.0)
    seen = cluster.nodes["n1"].judge._version
    cluster.stop()
    cluster.redis.data.clear()
    cluster.redis.expires.clear()
    cluster.redis.run("HSET", "sfs:ping:down", "n4", json.dumps({"since": 0.0}))
    cluster.redis.run("SET", "sfs:ping:version", seen)
    judge = cluster.nodes["n1"].judge
    judge.tally()
    assert "n4" not in judge.down
    cluster.clock.advance(FULL_READ_SECONDS)
    judge.tally()
    assert "n4" in judge.down


def test_replayed_packets_of_a_removed_node_change_no_verdict(cluster) -> None:
    """Genuine packets of n5 replayed (within the clock window) after n5 left the registry
    are dropped or, PINGs, only answered: nothing raises, no vote, nobody goes down."""
    cluster.net.record()
    cluster.run(1.0)
    from_n5 = [(dst, data) for src, dst, data in cluster.net.sent or []
               if src == cluster.addr("n5")]
    assert from_n5
    cluster.nodes["n5"].stopService()
    remaining = [r for r in cluster.records if r.name != "n5"]
    for name in ("n1", "n2", "n3", "n4"):
        cluster.nodes[name].peers.set_registry(remaining)
    cluster.run(1.0)
    by_addr = {cluster.addr(name): name for name in cluster.nodes}
    for dst, data in from_n5:
        cluster.nodes[by_addr[dst]].prober.datagramReceived(data, cluster.addr("n5"))
    cluster.run(2.0)
    assert all(not cluster.down_in(n) for n in ("n1", "n2", "n3", "n4"))
    assert not any(k.startswith(b"sfs:ping:votes:") for k in cluster.redis.data)
    assert sum(cluster.nodes[n].metrics.dropped.labels(reason="unknown_sender")._value.get()
               for n in ("n1", "n2", "n3", "n4")) > 0
