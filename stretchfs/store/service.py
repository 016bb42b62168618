"""Assembles the store process from injected reactor, Redis and HTTP client."""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.application.service import MultiService, Service
from twisted.logger import Logger

from stretchfs.config import StoreConfig
from stretchfs.health import Readiness
from stretchfs.metrics import new_registry
from stretchfs.pingnet.peers import Peers
from stretchfs.pingnet.wiring import attach_ping_net, build_ping_net
from stretchfs.redisstore import RedisStore
from stretchfs.roles import CallOnStop, http_services
from stretchfs.store.api import StoreAPI
from stretchfs.store.batch import BatchCopier
from stretchfs.store.content import ContentService, DiskMonitor
from stretchfs.store.delivery import DeliveryResource, StoreRoot
from stretchfs.store.inventory import InventorySyncService, SyncGuard
from stretchfs.store.journal import Journal
from stretchfs.store.layout import ContentStore
from stretchfs.store.leaving import LeavingCopies
from stretchfs.store.publisher import InventoryPublisher
from stretchfs.store.scrub import ScrubService
from stretchfs.store.stats import StoreStats, StoreStatsCollector
from stretchfs.store.upload import PutReceiver
from stretchfs.threads import RunBlocking
from stretchfs.web.limits import LimitedRequest, limited_request
from stretchfs.web.listen import ListeningService
from stretchfs.wire.master import MasterClient
from stretchfs.wire.signing import delivery_secret
from stretchfs.wire.store import StoreClient

log = Logger()
ROOT_REASON = "root"
LOCK_RETRY_SECONDS = 5.0


class PrepareRoot(Service):
    """Prepares the store root at start and holds its lock; blocks readiness until done.

    Creates content/, tmp/ and journal/, takes the root's lock (one store
    process or `stretchfs inventory sync` at a time: two writers would
    publish out of order), checks the root is writable and opens the
    journal.  While another process holds the lock it retries every
    `LOCK_RETRY_SECONDS`.  With `mount_check`, a root that is not a mount
    point is left untouched (without content/ and journal/ no PUT, remove or
    sync can run) and readiness stays blocked.
    """

    def __init__(self, store: ContentStore, journal: Journal, readiness: Readiness,
                 clock: Any, mount_check: bool = False) -> None:
        self._store = store
        self._journal = journal
        self._readiness = readiness
        self._clock = clock
        self._mount_check = mount_check
        self._lock: Any = None
        self._retry: Any = None

    def startService(self) -> None:
        """Prepare the root now (or block readiness with the reason)."""
        super().startService()
        root = self._store.root
        if self._mount_check and not os.path.ismount(root):
            log.critical("store root {root} is not a mount point (mount_check): is its disk "
                         "mounted? Serving nothing until it is and the store restarts",
                         root=root)
            self._readiness.block(ROOT_REASON, "store root {} is not a mount point".format(root))
            return
        self._prepare()

    def _prepare(self) -> None:
        self._retry = None
        root = self._store.root
        try:
            self._store.prepare()
            self._lock = self._store.lock()
        except BlockingIOError:
            log.warn("store root {root} is locked by another process (a running "
                     "`stretchfs inventory sync`?); retrying", root=root)
            self._readiness.block(ROOT_REASON, "store root locked by another process")
            self._retry = self._clock.callLater(LOCK_RETRY_SECONDS, self._prepare)
            return
        except OSError as exc:
            self._unusable(exc)
            return
        try:
            if not os.access(root, os.W_OK):
                raise PermissionError("not writable")
            self._journal.open()
        except OSError as exc:
            self._unusable(exc)
            return
        self._readiness.clear(ROOT_REASON)

    def _unusable(self, exc: OSError) -> None:
        log.critical("store root {root} unusable: {error}", root=self._store.root,
                     error=str(exc))
        self._readiness.block(ROOT_REASON, "store root unusable: {}".format(exc))

    def stopService(self) -> Any:
        """Close the journal and release the root."""
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._journal.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class StoreService(MultiService):
    """The store process's services, with handles on its parts (tests, tools)."""

    def __init__(self, *, api: StoreAPI, root_resource: StoreRoot, content: ContentService,
                 publisher: InventoryPublisher, sync: InventorySyncService, peers: Peers,
                 request_factory: type[LimitedRequest]) -> None:
        super().__init__()
        self.api = api
        self.root_resource = root_resource
        self.content = content
        self.publisher = publisher
        self.sync = sync
        self.peers = peers
        self.request_factory = request_factory


def build_store_service(config: StoreConfig, *, reactor: Any, redis: RedisStore, http: Any,
                        udp: bool, run_blocking: RunBlocking, peers: Peers | None = None,
                        master: Any = None,
                        call_from_thread: Callable[..., Any] | None = None) -> StoreService:
    """The store: content on one disk, served over HTTP, inventory published to the master.

    `master` defaults to a `MasterClient` on `http`.  `run_blocking` is how
    fsync, renames, scans and the hashing and writing of bodies leave the
    reactor thread (the reactor's thread pool; unit tests pass an inline
    executor), and `call_from_thread` how that work reports back (default:
    a direct call).  Without `udp` (a reactor that cannot listen on UDP) the
    ping net is not built.
    """
    readiness = Readiness()
    registry = new_registry()
    peers = peers if peers is not None else Peers(self_name=config.node.name)
    if master is None:
        master = MasterClient(http, config.cluster.master_urls, config.cluster.key,
                              config.cluster.request_timeout, reactor)
    store = ContentStore(config.store.root)
    journal = Journal(store.journal_dir)
    stats = StoreStats()
    guard = SyncGuard()
    disk = DiskMonitor(store, config.store.min_free, reactor)
    receiver = PutReceiver(store, cluster_key=config.cluster.key,
                           max_put=config.store.max_put, min_free=config.store.min_free,
                           run=run_blocking, on_full=disk.check)
    publisher = InventoryPublisher(journal, master, config.node.name, clock=reactor,
                                   batch_size=config.inventory.batch_size,
                                   run_blocking=run_blocking)
    leaving = LeavingCopies(store, config.store.remove_grace, reactor, run_blocking)
    content = ContentService(store, receiver, publisher, stats=stats, guard=guard, disk=disk,
                             leaving=leaving,
                             run_blocking=run_blocking, peers=peers,
                             store_client=lambda record: StoreClient(
                                 http, record.url, config.cluster.key,
                                 config.cluster.request_timeout, reactor))
    sync = InventorySyncService(store, journal, master, config.node.name, clock=reactor,
                                interval=config.inventory.interval, run_blocking=run_blocking,
                                stats=stats, guard=guard, on_synced=publisher.kick,
                                call_from_thread=call_from_thread)
    registry.register(StoreStatsCollector(stats, lambda: journal.pending))
    listeners: list[ListeningService] = []  # filled below, read by the registration
    net, registration = build_ping_net(config, reactor=reactor, redis=redis, master=master,
                                       peers=peers, metrics_registry=registry, udp=udp,
                                       listeners=listeners)
    disk.on_change(registration.set_writable)
    api = StoreAPI(config, readiness=readiness, metrics_registry=registry, clock=reactor,
                   content=content, pingnet=net, batch=BatchCopier(content, run_blocking))
    delivery = DeliveryResource(store.root, delivery_secret(config.cluster.key), reactor, stats)
    root = StoreRoot(delivery, api.app.resource())
    factory = limited_request(receiver.open_request)
    top = StoreService(api=api, root_resource=root, content=content, publisher=publisher,
                       sync=sync, peers=peers, request_factory=factory)

    PrepareRoot(store, journal, readiness, reactor,
                config.store.mount_check).setServiceParent(top)
    disk.setServiceParent(top)
    leaving.setServiceParent(top)
    publisher.setServiceParent(top)
    sync.setServiceParent(top)
    ScrubService(store, content.quarantine, clock=reactor, run_blocking=run_blocking,
                 rate=config.scrub.rate, period=config.scrub.period, stats=stats,
                 ready=lambda: readiness.ready).setServiceParent(top)
    listeners += http_services(reactor, config.http.listen, root, "store",
                               max_body=config.http.max_body, request_factory=factory)
    for listener in listeners:
        listener.setServiceParent(top)
    CallOnStop(redis.close).setServiceParent(top)
    attach_ping_net(top, net, registration, listeners, reactor)
    return top
