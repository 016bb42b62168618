"""Assembles the prism process from injected reactor, Redis and HTTP client."""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults

from stretchfs.config import PrismConfig, worker_reader_name
from stretchfs.health import Readiness
from stretchfs.metrics import new_registry
from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.pingnet.wiring import attach_ping_net, build_ping_net
from stretchfs.prism.api import PrismAPI
from stretchfs.prism.mirror import InventoryMirror, PurchaseMirror
from stretchfs.prism.replicate import Replicator
from stretchfs.prism.retrieve import Retriever, SafeEndpointFactory, system_resolver
from stretchfs.prism.sync import MirrorSync
from stretchfs.prism.upload import UploadOpener
from stretchfs.prism.workers import RelayedStatus, WorkerLink, WorkerSupervisor, WorkerWiring
from stretchfs.redisstore import RedisStore
from stretchfs.roles import CallOnStop, http_services
from stretchfs.threads import RunBlocking
from stretchfs.web.limits import LimitedRequest, limited_request
from stretchfs.web.listen import ListeningService
from stretchfs.wire.master import MasterClient
from stretchfs.wire.store import StoreClient


class PrismService(MultiService):
    """The prism process's services, with handles on its parts (tests, tools)."""

    def __init__(self, *, api: PrismAPI, peers: Peers,
                 inventory_sync: MirrorSync[InventoryMirror],
                 purchase_sync: MirrorSync[PurchaseMirror],
                 request_factory: type[LimitedRequest]) -> None:
        super().__init__()
        self.api = api
        self.peers = peers
        self.inventory_sync = inventory_sync
        self.purchase_sync = purchase_sync
        self.request_factory = request_factory


def build_prism_service(config: PrismConfig, *, reactor: Any, redis: RedisStore,
                        http: Any, udp: bool, run_blocking: RunBlocking,
                        peers: Peers | None = None, master: Any = None,
                        retrieve_agent: Any = None,
                        workers: WorkerWiring | None = None) -> PrismService:
    """The prism: mirrors of the master's databases, the public API, delivery.

    `master` defaults to a `MasterClient` over `http`; `retrieve_agent` to an
    Agent whose connections go through `SafeEndpointFactory` (getaddrinfo in a
    thread).  Uploads and retrieves are hashed and
    written on `run_blocking` (the reactor's thread pool; unit tests pass an
    inline executor).  Without `udp` (a reactor that cannot listen on UDP)
    the ping net is not built.  `workers` (with `[http] workers` > 1) makes this
    process worker 1 (ping net, registration, spawns the others) or one of
    workers 2..N (peers from worker 1, no ping net); see `prism/workers.py`.
    """
    worker = workers.worker if workers is not None else 1
    readiness = Readiness()
    registry = new_registry()
    if peers is None:
        peers = Peers(self_name=config.node.name)
    timeout = config.cluster.request_timeout
    if master is None:
        master = MasterClient(http, config.cluster.master_urls, config.cluster.key, timeout,
                              reactor, reader=worker_reader_name(config.node.name, worker))
    inventory = MirrorSync("inventory", load_snapshot=master.inventory_snapshot,
                           read_feed=master.inventory_feed, new_mirror=InventoryMirror,
                           readiness=readiness, clock=reactor)
    purchases = MirrorSync("purchases", load_snapshot=master.purchase_snapshot,
                           read_feed=master.purchase_feed, new_mirror=PurchaseMirror,
                           readiness=readiness, clock=reactor)
    listeners: list[ListeningService] = []  # filled below, read by the registration
    net, registration = build_ping_net(config, reactor=reactor, redis=redis, master=master,
                                       peers=peers, metrics_registry=registry,
                                       udp=udp and worker == 1, listeners=listeners)
    link: WorkerLink | None = None
    pingnet: Any = net
    refresh_registry = registration.refresh_soon
    if workers is not None and worker > 1:
        assert workers.connect is not None
        pingnet = RelayedStatus()
        link = WorkerLink(peers=peers, relayed=pingnet, connect=workers.connect,
                          stop_worker=workers.stop)
        refresh_registry = link.request_refresh

    def store_client(record: PeerRecord) -> StoreClient:
        return StoreClient(http, record.url, config.cluster.key, timeout, reactor)

    replicator = Replicator(peers=peers, inventory=lambda: inventory.mirror,
                            store_client=store_client,
                            replicas=config.cluster.replicas, min_copies=config.prism.min_copies,
                            site=config.node.site, clock=reactor,
                            refresh_registry=refresh_registry)
    if retrieve_agent is None:
        from twisted.web.client import Agent, HTTPConnectionPool

        endpoints = SafeEndpointFactory(reactor, system_resolver(reactor),
                                        config.retrieve.allow_private)
        retrieve_agent = Agent.usingEndpointFactory(
            reactor, endpoints, pool=HTTPConnectionPool(reactor, persistent=False))
    retriever = Retriever(agent=retrieve_agent, clock=reactor,
                          max_bytes=config.retrieve.max_size, timeout=config.retrieve.timeout,
                          tmp_dir=config.prism.tmp_dir, run=run_blocking)
    api = PrismAPI(config, readiness=readiness, metrics_registry=registry, clock=reactor,
                   master=master, peers=peers, inventory=lambda: inventory.mirror,
                   purchases=lambda: purchases.mirror, replicator=replicator,
                   retriever=retriever, syncs=[inventory, purchases],
                   store_client=store_client, pingnet=pingnet)
    factory = limited_request(UploadOpener(config.prism.tmp_dir, config.prism.max_upload,
                                           api.sessions.validate, run=run_blocking))
    top = PrismService(api=api, peers=peers, inventory_sync=inventory, purchase_sync=purchases,
                       request_factory=factory)
    if link is not None:
        link.setServiceParent(top)
    inventory.setServiceParent(top)
    purchases.setServiceParent(top)
    listeners += http_services(reactor, config.http.listen, api.resource(), "prism",
                               max_body=config.http.max_body, request_factory=factory,
                               reuse_port=workers is not None,
                               ports=workers.ports if workers is not None and worker > 1
                               else None)
    for listener in listeners:
        listener.setServiceParent(top)
    CallOnStop(redis.close).setServiceParent(top)
    if link is None:
        attach_ping_net(top, net, registration, listeners, reactor)
    if workers is not None and worker == 1:
        _supervisor(config.http.workers, workers, peers, net, registration.refresh_soon,
                    listeners, reactor).setServiceParent(top)
    return top


def _supervisor(count: int, workers: WorkerWiring, peers: Peers, net: Any,
                refresh_registry: Callable[[], object], listeners: list[ListeningService],
                reactor: Any) -> WorkerSupervisor:
    """Worker 1's supervisor of workers 2..`count`, started once `listeners` are bound."""
    assert workers.spawn is not None

    def ports() -> Deferred[list[int]]:
        bound = gatherResults([listener.ready for listener in listeners])
        return bound.addCallback(lambda addresses: [a.port for a in addresses])

    return WorkerSupervisor(count=count, spawn=workers.spawn, peers=peers,
                            status=lambda: net.status() if net is not None else None,
                            ports=ports, clock=reactor, refresh_registry=refresh_registry,
                            stop_prism=workers.stop)
