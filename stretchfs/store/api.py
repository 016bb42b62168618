"""The store's HTTP API (internal routes; signed delivery lives in delivery.py)."""

from __future__ import annotations

import os
from typing import Any

from klein import Klein
from prometheus_client import CollectorRegistry
from twisted.logger import Logger

from stretchfs.config import StoreConfig
from stretchfs.errors import InvalidInput, NotFound
from stretchfs.health import Readiness
from stretchfs.pingnet.status import add_pingnet_routes
from stretchfs.roles import NodeAPI
from stretchfs.store.batch import BatchCopier, parse_hashes, parse_items
from stretchfs.store.content import ContentService
from stretchfs.store.delivery import FileStreamer, content_type
from stretchfs.store.upload import PutUpload
from stretchfs.web.auth import cluster_key_required
from stretchfs.web.common import add_common_routes
from stretchfs.web.errormap import install_error_handlers
from stretchfs.web.jsonio import read_json_object, write_json
from stretchfs.web.limits import intake_of
from stretchfs.wire.store import EXT_HEADER

MAX_EXISTS_HASHES = 10_000


def hash_field(body: dict[str, Any]) -> Any:
    """The content id of a body: `hash`, or `sha1` as clients also send."""
    value = body.get("hash", body.get("sha1"))
    if value is None:
        raise InvalidInput("missing hash")
    return value


log = Logger()

class StoreAPI(NodeAPI):
    """Routes of a store: content in, content out, inventory."""

    app = Klein()
    app.url_map.merge_slashes = False
    install_error_handlers(app)
    add_common_routes(app, "store")
    add_pingnet_routes(app)

    def __init__(self, config: StoreConfig, *, readiness: Readiness,
                 metrics_registry: CollectorRegistry, clock: Any,
                 content: ContentService, pingnet: Any, batch: BatchCopier) -> None:
        super().__init__(config, readiness=readiness, metrics_registry=metrics_registry,
                         clock=clock)
        self.config = config
        self.pingnet = pingnet
        self.content = content
        self.batch = batch

    def health_details(self) -> dict[str, Any]:
        """Extra /health fields: whether this store accepts new content."""
        return {"writable": self.content.disk.writable}

    @app.route("/content/put/<path:name>", methods=["PUT"])
    @cluster_key_required
    async def put_content(self, request: Any, name: str) -> bytes:
        """Store a body under `<sha1>.<ext>` after checking its SHA1 (the body was
        streamed into a `PutUpload` by `PutReceiver.open_request`)."""
        upload = intake_of(request, PutUpload)
        stored, created = await self.content.commit(upload)
        return write_json(request, {"hash": stored.sha1, "sha1": stored.sha1, "ext": stored.ext,
                                    "size": stored.size, "existed": not created}, 201)

    @app.route("/content/download", methods=["POST"])
    @cluster_key_required
    async def post_download(self, request: Any) -> Any:
        """The bytes of a content (for repair by another store)."""
        body = read_json_object(request, self.max_body)
        found = await self.content.find(hash_field(body))
        try:
            handle = open(found.path, "rb")
        except FileNotFoundError:
            raise NotFound("content not found") from None
        size = os.fstat(handle.fileno()).st_size
        request.setHeader(b"Content-Type", content_type(found.ext))
        request.setHeader(b"Content-Length", b"%d" % size)
        request.setHeader(EXT_HEADER, found.ext.encode("ascii"))
        request.setHeader(b"ETag", b'"' + found.sha1.encode("ascii") + b'"')
        if size == 0:
            handle.close()
            return b""
        # Klein finishes a request as soon as its handler's result arrives, so wait
        # here until the streamer has finished it (or the client went away).
        finished = request.notifyFinish()
        FileStreamer(request, handle, 0, size).start()
        try:
            await finished
        except Exception:
            log.debug("download of {sha1} cut short by the client", sha1=found.sha1)
        return None

    @app.route("/content/exists", methods=["POST"])
    @cluster_key_required
    async def post_exists(self, request: Any) -> bytes:
        """`{hash: {exists, ext, size}}` for one hash or a list."""
        value = hash_field(read_json_object(request, self.max_body))
        hashes = [value] if isinstance(value, str) else value
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise InvalidInput("hash must be a string or a list of strings")
        if len(hashes) > MAX_EXISTS_HASHES:
            raise InvalidInput("at most {} hashes per call".format(MAX_EXISTS_HASHES))
        return write_json(request, await self.content.exists(hashes))

    @app.route("/content/remove", methods=["POST"])
    @cluster_key_required
    async def post_remove(self, request: Any) -> bytes:
        """Delete a content and publish the removal to the master."""
        sha1 = hash_field(read_json_object(request, self.max_body))
        if not isinstance(sha1, str):
            raise InvalidInput("hash must be a string")
        count = await self.content.remove(sha1)
        return write_json(request, {"success": "File removed", "hash": sha1, "removed": count})

    @app.route("/content/fetch", methods=["POST"])
    @cluster_key_required
    async def post_fetch(self, request: Any) -> bytes:
        """Copy a content from another store (repair)."""
        body = read_json_object(request, self.max_body)
        sha1 = hash_field(body)
        ext = body.get("ext")
        source = body.get("from", body.get("store"))
        if not isinstance(sha1, str) or (ext is not None and not isinstance(ext, str)):
            raise InvalidInput("hash and ext must be strings")
        stored, created = await self.content.fetch(sha1, ext, source)
        return write_json(request, {"hash": stored.sha1, "ext": stored.ext, "size": stored.size,
                                    "from": source, "existed": not created},
                          201 if created else 200)

    @app.route("/content/fetch-batch", methods=["POST"])
    @cluster_key_required
    async def post_fetch_batch(self, request: Any) -> bytes:
        """Copy many small contents from another store in one request (batched repair)."""
        body = read_json_object(request, self.max_body)
        wanted = parse_items(body)
        return write_json(request, await self.batch.fetch(body.get("from"), wanted))

    @app.route("/content/download-batch", methods=["POST"])
    @cluster_key_required
    async def post_download_batch(self, request: Any) -> bytes:
        """The bytes of many contents, framed (for a batched repair by another store)."""
        body = await self.batch.serve(parse_hashes(read_json_object(request, self.max_body)))
        request.setHeader(b"Content-Type", b"application/octet-stream")
        return body

    @app.route("/stat", methods=["GET"])
    async def get_stat(self, request: Any) -> bytes:
        """Disk total/free, file count, bytes served and the writable flag."""
        disk = self.content.disk
        disk.check()
        stats = self.content.stats
        return write_json(request, {
            "name": self.node_name,
            "disk": {"total": disk.total, "free": disk.free,
                     "min_free": self.config.store.min_free},
            "writable": disk.writable,
            "files": stats.files,
            "bytes_served": stats.bytes_served,
            "deliveries": stats.deliveries,
            "denied": stats.denied,
            "puts": stats.puts,
            "bytes_received": stats.bytes_received,
            "removes": stats.removes,
            "publish_backlog": self.content.publisher.backlog,
            "last_sync": stats.last_sync,
        })
