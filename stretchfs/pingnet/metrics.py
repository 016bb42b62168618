"""Prometheus metrics of the ping net, registered on the process registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stretchfs.pingnet.packet import DROP_REASONS, KIND_NAMES

RTT_BUCKETS_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)


class PingMetrics:
    """Probes sent and lost, RTT, votes, packets dropped by reason, verdicts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.probes_sent = Counter("stretchfs_pingnet_probes_sent",
                                   "Probe rounds started (one per peer per interval)",
                                   registry=registry)
        self.probes_lost = Counter("stretchfs_pingnet_probes_lost",
                                   "Probe rounds that got no answer, direct or relayed",
                                   registry=registry)
        self.packets_sent = Counter("stretchfs_pingnet_packets_sent",
                                    "UDP packets sent", ["kind"], registry=registry)
        self.packets_received = Counter("stretchfs_pingnet_packets_received",
                                        "Valid UDP packets received", ["kind"],
                                        registry=registry)
        self.rtt = Histogram("stretchfs_pingnet_rtt_seconds", "PING to PONG round-trip time",
                             buckets=RTT_BUCKETS_SECONDS, registry=registry)
        self.votes_cast = Counter("stretchfs_pingnet_votes_cast",
                                  "Down votes written to the ballot box", registry=registry)
        self.dropped = Counter("stretchfs_pingnet_packets_dropped",
                               "Packets dropped, by reason", ["reason"], registry=registry)
        self.verdict_changes = Counter("stretchfs_pingnet_verdict_changes",
                                       "Changes of this node's verdict on a peer",
                                       ["available"], registry=registry)
        self.peers_down = Gauge("stretchfs_pingnet_peers_down",
                                "Peers this node currently considers unavailable",
                                registry=registry)
        self.fallback = Gauge("stretchfs_pingnet_ballot_fallback",
                              "1 while the ballot box is unreachable (own observations used)",
                              registry=registry)
        self.http_failing = Gauge("stretchfs_pingnet_http_failing",
                                  "1 while this node's HTTP self-check fails (ping net silent)",
                                  registry=registry)
        for reason in DROP_REASONS + ("error",):
            self.dropped.labels(reason=reason)
        # labelled children looked up once: these are hit for every packet
        self.sent_by_kind = {kind: self.packets_sent.labels(kind=name)
                             for kind, name in KIND_NAMES.items()}
        self.received_by_kind = {kind: self.packets_received.labels(kind=name)
                                 for kind, name in KIND_NAMES.items()}
