"""The prism's public HTTP API (SDK-compatible): users, content, purchases.

Delivery (`/<token>/<file>`, `/static/<hash>/<file>`) is answered by
`stretchfs.prism.delivery.PrismRoot` in front of this Klein app; use
`PrismAPI.resource()` as the Site's root.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from klein import Klein
from prometheus_client import CollectorRegistry, Counter
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from stretchfs import errors
from stretchfs.config import PrismConfig
from stretchfs.health import Readiness
from stretchfs.pingnet.status import add_pingnet_routes
from stretchfs.prism.delivery import Delivery, PrismRoot
from stretchfs.prism.lookup import ContentLookup, StoreProbe
from stretchfs.prism.mirror import InventoryRecord
from stretchfs.prism.replicate import Replicator
from stretchfs.prism.retrieve import parse_spec
from stretchfs.prism.sessions import SessionCache, session_required
from stretchfs.prism.upload import MultipartUpload, extension_for
from stretchfs.roles import NodeAPI
from stretchfs.web.auth import cluster_key_required
from stretchfs.web.common import add_common_routes
from stretchfs.web.errormap import install_error_handlers
from stretchfs.web.intake import remove_temp_file
from stretchfs.web.jsonio import read_json_object, write_json
from stretchfs.web.limits import intake_of
from stretchfs.wire.identifiers import is_extension, is_purchase_token, public_sha1
from stretchfs.wire.purchases import parse_purchase_request
from stretchfs.wire.upstream import relay, translate

log = Logger()

MAX_CREDENTIAL_CHARS = 1024


def parse_hashes(body: dict[str, Any], limit: int) -> tuple[list[str], bool]:
    """(hashes, bulk) from `{hash|sha1: "..." | [...]}`; 400 on anything else."""
    value = body.get("hash", body.get("sha1"))
    if isinstance(value, str):
        hashes, bulk = [value], False
    elif isinstance(value, list):
        hashes, bulk = value, True
    else:
        raise errors.InvalidInput("expected 'hash' (or 'sha1'): a SHA1 or a list of them")
    if len(hashes) > limit:
        raise errors.InvalidInput("at most {} hashes per call".format(limit))
    clean = []
    for item in hashes:
        sha1 = public_sha1(item)
        if sha1 is None:
            raise errors.InvalidInput("invalid SHA1: {!r}".format(item)[:120])
        clean.append(sha1)
    return clean, bulk


def mime_type(ext: str) -> str:
    """The MIME type of an extension."""
    return mimetypes.types_map.get("." + ext, "application/octet-stream")


def content_record(sha1: str, record: InventoryRecord | None) -> dict[str, Any]:
    """The SDK's existence/detail record (`exists: false` for None)."""
    if record is None:
        return {"hash": sha1, "sha1": sha1, "ext": "", "mimeType": "", "size": 0,
                "exists": False, "count": 0, "map": []}
    return {"hash": sha1, "sha1": sha1, "ext": record.ext, "mimeType": mime_type(record.ext),
            "size": record.size, "exists": True, "count": len(record.stores),
            "map": list(record.stores)}


def _clean_extension(value: Any) -> str | None:
    """The SDK's `extension` (from `path.extname(url)`: may be '' or 'mp4?x=1'), or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidInput("expected 'extension': a string")
    for mark in "?#&":
        value = value.split(mark, 1)[0]
    ext = value.removeprefix(".").lower()
    if not is_extension(ext):
        raise errors.InvalidInput("invalid extension")
    return ext


def _string(body: dict[str, Any], name: str, limit: int = MAX_CREDENTIAL_CHARS) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise errors.InvalidInput("expected '{}': a non-empty string".format(name))
    return value


class PrismAPI(NodeAPI):
    """Public routes of a prism (SDK-compatible)."""

    app = Klein()
    install_error_handlers(app)
    add_common_routes(app, "prism")
    add_pingnet_routes(app)

    def __init__(self, config: PrismConfig, *, readiness: Readiness,
                 metrics_registry: CollectorRegistry, clock: Any, master: Any, peers: Any,
                 inventory: Any, purchases: Any, replicator: Replicator, retriever: Any,
                 syncs: list[Any], store_client: Any, pingnet: Any) -> None:
        super().__init__(config, readiness=readiness, metrics_registry=metrics_registry,
                         clock=clock)
        self.config = config
        self.pingnet = pingnet
        self.master = master
        self.inventory = inventory
        self.purchases = purchases
        self.replicator = replicator
        self.retriever = retriever
        self.syncs = syncs
        self.sessions = SessionCache(master, clock, config.prism.session_cache_ttl)
        self.lookup = ContentLookup(inventory=inventory, master=master,
                                    probe=StoreProbe(peers, store_client), clock=clock)
        self.delivery = Delivery(config=config, peers=peers, purchases=purchases,
                                 lookup=self.lookup, master=master, clock=clock)
        self.uploads = Counter("stretchfs_prism_uploads", "Files received by upload/retrieve",
                               ["result"], registry=metrics_registry)
        self.deliveries = Counter("stretchfs_prism_deliveries",
                                  "Delivery answers (/<token>/<file>, /static/...) by status",
                                  ["code"], registry=metrics_registry)

    def resource(self) -> PrismRoot:
        """The Site root: delivery fast path in front of the Klein app."""
        reserved = frozenset(rule.rule.split("/")[1].encode("ascii")
                             for rule in self.app.url_map.iter_rules())
        return PrismRoot(self.delivery, self.app.resource(), reserved, self.deliveries)

    # -- users -------------------------------------------------------------
    @app.route("/user/login", methods=["POST"])
    async def post_login(self, request: IRequest) -> bytes:
        """Log in through the master: the SDK's `{success, session}`."""
        body = read_json_object(request, self.max_body)
        username = _string(body, "username")
        password = _string(body, "password")
        ip = request.getClientAddress()
        answer = await relay(self.master.login(
            username, password, getattr(ip, "host", "")), "master", "log in")
        session = answer.get("session") or {}
        if session.get("token"):
            self.sessions.remember(session["token"], session)
        return write_json(request, {"success": "User logged in", "session": session})

    @app.route("/user/logout", methods=["POST"])
    @session_required
    async def post_logout(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """End the session on the master (and in this prism's cache at once)."""
        token = session["token"]
        self.sessions.forget(token)
        await relay(self.master.logout(token), "master", "log out")
        self.sessions.forget(token)
        return write_json(request, {"success": "User logged out"})

    @app.route("/user/session/validate", methods=["POST"])
    @session_required
    def post_session_validate(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """The validated session."""
        return write_json(request, {"success": "Session valid", "session": session})

    @app.route("/user/session/update", methods=["POST"])
    @session_required
    async def post_session_update(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """Replace the session's data on the master."""
        body = read_json_object(request, self.max_body)
        data = body.get("data", {})
        if not isinstance(data, dict):
            raise errors.InvalidInput("expected 'data': an object")
        answer = await relay(self.master.update_session(session["token"], data),
                             "master", "update the session")
        updated = answer.get("session") or {}
        if updated:
            self.sessions.remember(session["token"], updated)
        return write_json(request, {"success": "Session updated", "session": updated})

    @app.route("/user/password/reset", methods=["POST"])
    @session_required
    async def post_password_reset(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """Give the session's user a new password (from the master)."""
        answer = await relay(self.master.reset_password(session["token"]),
                             "master", "reset the password")
        return write_json(request, {"success": "User password reset",
                                    "password": answer.get("password")})

    # -- content -----------------------------------------------------------
    async def _records(self, request: IRequest) -> tuple[dict[str, Any], str | None]:
        """The SDK records of the body's hash(es) through the lookup chain, and the one
        hash asked when not a list."""
        hashes, bulk = parse_hashes(read_json_object(request, self.max_body),
                                    self.config.prism.bulk_max)
        found = await self.lookup.find(hashes)
        return ({sha1: content_record(sha1, record) for sha1, record in found.items()},
                None if bulk else hashes[0])

    @app.route("/content/detail", methods=["POST"])
    @session_required
    async def post_detail(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """Record(s) of the hash(es); 404 for one unknown hash (after asking the master)."""
        records, single = await self._records(request)
        if single is not None and not records[single]["exists"]:
            raise errors.NotFound("content not found")
        return write_json(request, records if single is None else records[single])

    @app.route("/content/exists", methods=["POST"])
    @session_required
    async def post_exists(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """Record(s) of the hash(es), `exists: false` for unknown ones."""
        records, single = await self._records(request)
        return write_json(request, records if single is None else records[single])

    @app.route("/content/upload", methods=["POST"])
    @session_required
    async def post_upload(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """Store every file part of a multipart upload; the SDK's answer."""
        upload = intake_of(request, MultipartUpload)
        try:
            await upload.complete()
            if not upload.files:
                raise errors.InvalidInput("expected at least one file part")
            files = {}
            for part in upload.files:
                ext = extension_for(part.mimetype, part.filename)
                stored = await self.replicator.store(part.sha1, ext, part.source, part.size)
                self.uploads.labels("dedup" if stored.deduplicated else "stored").inc()
                files[part.field] = {
                    "key": part.field, "name": part.filename, "mimetype": part.mimetype,
                    "ext": stored.ext, "hash": part.sha1, "sha1": part.sha1, "size": part.size,
                    "copies": stored.copies}
            return write_json(request, {"success": "File(s) uploaded", "data": upload.fields,
                                        "files": files})
        finally:
            upload.cleanup()

    @app.route("/content/retrieve", methods=["POST"])
    @session_required
    async def post_retrieve(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """Fetch a remote URL (SSRF-checked) and store it like an upload."""
        body = read_json_object(request, self.max_body)
        spec = parse_spec(body)
        extension = _clean_extension(body.get("extension"))
        fetched = await self.retriever.fetch(spec.url, spec.method, spec.headers)
        try:
            path_name = fetched.url.split("?", 1)[0].rsplit("/", 1)[-1]
            ext = extension.lower() if extension else extension_for(fetched.content_type,
                                                                    path_name)
            stored = await self.replicator.store(fetched.sha1, ext, fetched.path, fetched.size)
        finally:
            remove_temp_file(fetched.path)
        self.uploads.labels("retrieved").inc()
        return write_json(request, {"hash": fetched.sha1, "sha1": fetched.sha1,
                                    "extension": stored.ext, "ext": stored.ext,
                                    "size": fetched.size, "copies": stored.copies})

    # -- purchases ---------------------------------------------------------
    # A purchase belongs to the user who made it (`owner` on the master): detail and
    # remove answer anyone else exactly as an unknown token.  `sessionToken` (SDK
    # shape) only ever echoes the caller's own token.
    def _purchase_answer(self, row: dict[str, Any], session: dict[str, Any]) -> dict[str, Any]:
        return {"token": row.get("token"), "hash": row.get("hash"), "sha1": row.get("hash"),
                "ext": row.get("ext"), "life": row.get("life"), "expires": row.get("expires"),
                "referrer": row.get("referrer") or [], "ip": row.get("ip", ""),
                "sessionToken": session["token"], "created": row.get("created")}

    @app.route("/content/purchase", methods=["POST"])
    @session_required
    async def post_purchase(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """Create a purchase of existing content through the master."""
        body = read_json_object(request, self.max_body)
        wanted = parse_purchase_request(
            body, default_life=self.config.prism.purchase_life, public=True,
            default_ip=getattr(request.getClientAddress(), "host", ""))
        stored = await self.lookup.find_one(wanted.sha1)  # 404 for content that is nowhere
        row = await relay(self.master.create_purchase({
            "hash": wanted.sha1, "ext": wanted.ext or stored.ext, "life": wanted.life,
            "referrer": wanted.referrer, "ip": wanted.ip, "owner": session.get("username")}),
            "master", "create the purchase")
        self.purchases().load_row(row)
        return write_json(request, self._purchase_answer(row, session))

    def _token(self, body: dict[str, Any]) -> str | None:
        """The body's purchase token; None when it cannot be one (answered as unknown)."""
        token = body.get("token")
        if not isinstance(token, str):
            raise errors.InvalidInput("expected 'token': a purchase token")
        return token if is_purchase_token(token) else None

    @app.route("/content/purchase/detail", methods=["POST"])
    @session_required
    async def post_purchase_detail(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """The caller's purchase of `token` (404 when unknown, expired or someone else's)."""
        token = self._token(read_json_object(request, self.max_body))
        owner = session.get("username")
        if token is None or owner is None:
            raise errors.NotFound("purchase not found")
        try:
            row = await self.master.get_purchase(token, owner)
        except (errors.PeerUnavailable, errors.UpstreamError) as exc:
            local = self.purchases().get(token, self.clock.seconds(), owner)
            if local is None:
                raise translate(exc, "master", "look the purchase up") from None
            row = {"token": token, "hash": local.sha1, "ext": local.ext, "owner": owner,
                   "expires": local.expires, "referrer": list(local.referrer)}
        if row is None or row.get("owner") != owner or \
                float(row.get("expires") or 0) <= self.clock.seconds():
            raise errors.NotFound("purchase not found")
        return write_json(request, self._purchase_answer(row, session))

    @app.route("/content/purchase/remove", methods=["POST"])
    @session_required
    async def post_purchase_remove(self, request: IRequest, session: dict[str, Any]) -> bytes:
        """Remove the caller's purchase of `token` through the master (count 0 if none)."""
        body = read_json_object(request, self.max_body)
        token = self._token(body)
        owner = session.get("username")
        count = 0
        if token is not None and owner is not None:
            answer = await relay(self.master.remove_purchase(token, owner),
                                 "master", "remove the purchase")
            count = int(answer.get("count", 0))
            if count:
                self.purchases().remove(token)
        return write_json(request, {"token": body["token"], "count": count,
                                    "success": "Purchase removed"})

    # -- operators (cluster key) -----------------------------------------------
    @app.route("/mirror/status", methods=["GET"])
    @cluster_key_required
    def get_mirror_status(self, request: IRequest) -> bytes:
        """Entries, cursor and reloads of each mirror."""
        return write_json(request, {sync.kind: {
            "entries": len(sync.mirror), "cursor": sync.cursor, "loaded": sync.loaded,
            "reloads": sync.reloads, "changes_applied": sync.changes_applied}
            for sync in self.syncs})

    @app.route("/mirror/inventory", methods=["POST"])
    @cluster_key_required
    def post_mirror_inventory(self, request: IRequest) -> bytes:
        """Which hashes this prism's mirror holds (no master fallback): for probes."""
        hashes, _bulk = parse_hashes(read_json_object(request, self.max_body),
                                     self.config.prism.bulk_max)
        mirror = self.inventory()
        return write_json(request, {sha1: mirror.get(sha1) is not None for sha1 in hashes})
