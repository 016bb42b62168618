"""Load and validate a role's TOML config into frozen dataclasses.

Order of precedence: defaults in code, then the TOML file, then environment
overrides for secrets (``STRETCHFS_CLUSTER_KEY``, ``STRETCHFS_REDIS_PASSWORD``).
Every mistake raises `ConfigError` with one line naming the file, the key and
what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

from stretchfs.errors import ConfigError
from stretchfs.wire.identifiers import is_extension, is_node_name

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")

CLUSTER_KEY_ENV = "STRETCHFS_CLUSTER_KEY"
EXAMPLE_CLUSTER_KEY = "change-me-to-a-long-random-secret"
MIN_CLUSTER_KEY_CHARS = 32
MAKE_KEY_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
REDIS_PASSWORD_ENV = "STRETCHFS_REDIS_PASSWORD"
DEFAULT_MASTER_URL = "http://127.0.0.1:8160"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4,
}


# -- value checks: each returns an error text ("expected ...") or None ------

def _positive(value: float) -> str | None:
    return None if value > 0 else "expected a number greater than 0"


def _batch_items(value: int) -> str | None:
    return None if 0 < value <= 1000 else "expected 1 to 1000 content per batch"


def _batch_bytes(value: int) -> str | None:
    return None if 0 < value <= 64 * 1024**2 else "expected 1 byte to 64 MiB per batch"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "expected a number of at least 0"


def _peer_name(value: str) -> str | None:
    if is_node_name(value):
        return None
    return "expected a name of lowercase letters, digits and '-' (1-63 chars)"


def _endpoint(value: str) -> str | None:
    kind = value.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl", "unix") and ":" in value:
        return None
    return "expected a Twisted endpoint such as 'tcp:8160:interface=127.0.0.1'"


def parse_listen(value: object) -> tuple[str, ...]:
    """`[http] listen`: one endpoint string or a non-empty list of them."""
    endpoints = [value] if isinstance(value, str) else value
    if not isinstance(endpoints, list) or not endpoints or \
            not all(isinstance(item, str) for item in endpoints):
        raise ValueError("expected an endpoint string or a list of them")
    for item in endpoints:
        problem = _endpoint(item)
        if problem:
            raise ValueError("{}, got {!r}".format(problem, item))
    return tuple(endpoints)


def _http_url(value: str) -> str | None:
    if value.startswith(("http://", "https://")) and len(value) > 8:
        return None
    return "expected an http:// or https:// URL"


def _optional_http_url(value: str) -> str | None:
    return None if value == "" else _http_url(value)


def _redis_url(value: str) -> str | None:
    if value.startswith(("redis://", "unix://")):
        return None
    return "expected redis://host:port/db or unix:///path/to/socket?db=0"


def parse_sentinels(value: object) -> tuple[str, ...]:
    """`[redis] sentinels`: "host:port, host:port" or a list of "host:port" strings."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError("expected \"host:port, host:port\" or a list of them")
    found: list[str] = []
    for item in (item.strip() for item in items):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError("expected host:port, got {!r}".format(item))
        if item in found:
            raise ValueError("{!r} is listed twice".format(item))
        found.append(item)
    return tuple(found)


def _replica_acks(value: int) -> str | None:
    return None if -1 <= value <= 16 else "expected -1 (automatic) or a number of replicas 0-16"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "expected a port number 0-65535"


def _extensions(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if not is_extension(v)]
    return "expected file extensions like 'mp4', got {!r}".format(bad[0]) if bad else None


def _replicas(value: int) -> str | None:
    return None if 1 <= value <= 16 else "expected a number of copies 1-16"


def _log_format(value: str) -> str | None:
    return None if value in ("text", "json") else "expected 'text' or 'json'"


def parse_size(value: object) -> int:
    """Parse a size: an integer of bytes or a string like '100 GiB'."""
    if isinstance(value, bool):
        raise ValueError("expected a size in bytes or a string like '100 GiB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("expected a size of at least 0 bytes")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        unit = (match.group(2) or "").lower() if match else None
        if match and unit in _SIZE_UNITS:
            return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise ValueError("expected a size in bytes or a string like '100 GiB'")


def setting(default: Any, doc: str, check: Callable[[Any], str | None] | None = None,
            parse: Callable[[object], Any] | None = None) -> Any:
    """Declare one config key with its default, meaning and validation."""
    return field(default=default, metadata={"doc": doc, "check": check, "parse": parse})


def section(cls: type[T], doc: str) -> Any:
    """Declare a config section (a nested dataclass with its own defaults)."""
    return field(default_factory=cls, metadata={"doc": doc})


# -- sections ---------------------------------------------------------------

@dataclass(frozen=True)
class NodeSettings:
    """Who this node is in the cluster."""

    name: str = setting("node1", "unique peer name: lowercase letters, digits, '-'", _peer_name)
    site: str = setting("local", "site (data centre) of this node", _peer_name)
    zone: str = setting("a", "zone (rack, power domain) inside the site", _peer_name)
    host: str = setting("127.0.0.1", "address other nodes use to reach this node")


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP listener."""

    listen: tuple[str, ...] = setting(
        ("tcp:0:interface=127.0.0.1",),
        "Twisted server endpoint string, or a list of them (one listener each); "
        "ssl:PORT:privateKey=KEY:certKey=CERT for TLS", None, parse_listen)
    public_url: str = setting("", "URL this node registers ('' = derived from the first "
                              "listener: https://host:port for ssl:, else http://host:port; "
                              "set it behind NAT or a load balancer)", _optional_http_url)
    max_body: int = setting(1024 * 1024, "largest accepted request body in bytes (JSON routes)",
                            None, parse_size)


MAX_PRISM_WORKERS = 64


@dataclass(frozen=True)
class PrismHttpSettings(HttpSettings):
    """The prism's HTTP listener, which several processes may share (docs/prism.md)."""

    workers: int = setting(1, "prism processes serving the listeners: the first runs the ping "
                           "net and registration, the others share its ports with SO_REUSEPORT "
                           "(tcp: and ssl: listeners only; 1-{})".format(MAX_PRISM_WORKERS),
                           lambda v: None if 1 <= v <= MAX_PRISM_WORKERS
                           else "expected 1-{}".format(MAX_PRISM_WORKERS))


@dataclass(frozen=True)
class ClusterSettings:
    """How this node reaches and authenticates to the rest of the cluster."""

    key: str = setting("", "shared cluster secret; overridden by $STRETCHFS_CLUSTER_KEY")
    master_url: str = setting("", "base URL of the master (one master; or use master_urls; "
                              "'' with no master_urls = http://127.0.0.1:8160)",
                              _optional_http_url)
    master_urls: tuple[str, ...] = setting(
        (), "base URLs of every master (docs/ha.md); after loading it always holds the "
        "master(s) to use, master_url the first")
    request_timeout: float = setting(
        10.0, "seconds without progress before an internal HTTP call fails", _positive)
    replicas: int = setting(2, "copies every content should have: each upload makes this "
                            "many, and the master's repair keeps this many counted copies "
                            "(the same on every node)", _replicas)


@dataclass(frozen=True)
class TlsSettings:
    """Trust for outgoing https:// calls (node to node, CLI to master)."""

    ca_file: str = setting("", "PEM bundle of the CAs trusted for https:// peers "
                           "('' = the system CA store)")


@dataclass(frozen=True)
class RedisSettings:
    """The cluster Redis (master's database and the ping net's ballot box)."""

    url: str = setting("redis://127.0.0.1:6379/0",
                       "redis://[user@]host:port/db or unix://[user@]/path?db=N "
                       "(user: the Redis ACL user, see etc/redis.conf)", _redis_url)
    password: str = setting("", "password of the Redis user; overridden by "
                            "$STRETCHFS_REDIS_PASSWORD (preferred)")
    prefix: str = setting("sfs:", "prefix of every key StretchFS writes")
    timeout: float = setting(5.0, "seconds before a Redis reply counts as lost", _positive)
    pool_size: int = setting(4, "connections in the shared pool", _positive)
    sentinels: tuple[str, ...] = setting(
        (), "Redis Sentinels as \"host:port, host:port\": connect to the current primary "
        "of `service` through them (url then names only the user and db)",
        parse=parse_sentinels)
    service: str = setting("", "the Sentinel service (master name) of the cluster Redis")
    sentinel_password: str = setting("", "password the Sentinels ask of clients "
                                     "('' = none)")
    min_replica_acks: int = setting(
        -1, "replicas that must hold a user, password, purchase or inventory write before "
        "it is acknowledged (Redis WAIT); -1 = 1 behind Sentinel, else 0", _replica_acks)

    @property
    def replica_acks(self) -> int:
        """`min_replica_acks` with -1 resolved: 1 behind Sentinel (replicas exist), else 0."""
        if self.min_replica_acks >= 0:
            return self.min_replica_acks
        return 1 if self.sentinels else 0


@dataclass(frozen=True)
class PingSettings:
    """The ping net (UDP probes and majority votes)."""

    enabled: bool = setting(True, "take part in the ping net")
    port: int = setting(0, "UDP port for probes (0 = any free port)", _port)
    interval: float = setting(0.5, "seconds between probe rounds", _positive)
    timeout: float = setting(0.25, "seconds a PONG may take", _positive)
    misses: int = setting(3, "consecutive lost probes before voting a peer down", _positive)
    vote_ttl: float = setting(10.0, "seconds a vote lives unless refreshed", _positive)
    registry_refresh: float = setting(60.0, "seconds between registry downloads", _positive)
    indirect: int = setting(3, "peers asked to relay a probe the target did not answer (0 = none)",
                            _non_negative)
    tally_interval: float = setting(0.25, "seconds between reads of the vote tallies", _positive)
    clock_window: float = setting(5.0, "seconds a packet's timestamp may differ from our clock",
                                  _positive)
    flap_window: float = setting(20.0, "a peer down again this soon after coming back is flapping",
                                 _positive)
    flap_hold: float = setting(30.0, "seconds a flapping peer must answer before it is readmitted "
                               "(doubles with each repeat)", _positive)
    observers: int = setting(10, "peers that probe each peer (all pairs while the cluster has "
                             "at most observers + 1 nodes)", _positive)
    rotate: float = setting(120.0, "seconds between changes of who observes whom", _positive)


@dataclass(frozen=True)
class MasterSettings:
    """Master-only behaviour."""

    session_ttl: float = setting(30 * 86400.0, "seconds of inactivity before a session expires",
                                 _positive)
    prune_interval: float = setting(86400.0, "seconds between purchase prunes", _positive)
    lease_ttl: float = setting(15.0, "seconds the purchase pruner's lease lasts without "
                               "renewal (one master prunes; another takes over within "
                               "4/3 of this after it died)", _positive)
    feed_max_len: int = setting(1_000_000, "change-feed entries kept before trimming", _positive)
    feed_poll_timeout: float = setting(10.0, "longest wait of a feed long-poll, seconds",
                                       _positive)
    bcrypt_rounds: int = setting(12, "bcrypt cost of user passwords (4-16; 12 in production)",
                                 lambda v: None if 4 <= v <= 16 else "expected 4-16")


@dataclass(frozen=True)
class RepairSettings:
    """Re-replication of content whose copies were lost (docs/repair.md)."""

    lost_after: float = setting(900.0, "seconds a store must stay voted down before it is "
                                "lost and its copies are made again elsewhere", _positive)
    interval: float = setting(2.0, "seconds between two rounds of the repair planner", _positive)
    per_store: int = setting(2, "copies a store takes part in at once (as source or target)",
                             _positive)
    per_store_bytes: int = setting(0, "bytes per second one store spends on repair copies (as "
                                   "source or target; 0: no limit)", None, parse_size)
    rescan: float = setting(300.0, "seconds between full scans of the inventory when no store "
                            "changed state", _positive)
    lease_ttl: float = setting(15.0, "seconds the planner's lease lasts without renewal (one "
                               "master plans at a time)", _positive)
    copy_timeout: float = setting(600.0, "seconds a target store may take to copy one content",
                                  _positive)
    batch_under: int = setting(1024**2, "content smaller than this many bytes is copied in "
                               "batches, many per request between one source and one target "
                               "(0: one copy per request)", None, parse_size)
    batch_items: int = setting(100, "content per batch (at most 1000)", _batch_items)
    batch_bytes: int = setting(8 * 1024**2, "bytes per batch (at most 64 MiB)", _batch_bytes,
                               parse_size)


@dataclass(frozen=True)
class StoreSettings:
    """Store-only behaviour: where the bytes live and how they are served."""

    root: str = setting("/var/lib/stretchfs/store", "folder that holds this store's content")
    min_free: int = setting(1024**3, "bytes that must stay free; below, the store is full",
                            None, parse_size)
    max_put: int = setting(100 * 1024**3, "largest accepted content PUT in bytes", None,
                           parse_size)
    mount_check: bool = setting(
        False, "refuse to start serving unless root is a mount point (a disk that failed to "
        "mount must not look like an empty store)")
    remove_grace: float = setting(
        60.0, "seconds a removed copy is still delivered (not held, listed or copied any "
        "more), for redirects given before the prisms learned of the removal", _non_negative)


@dataclass(frozen=True)
class InventorySettings:
    """Store inventory scan and publishing."""

    interval: float = setting(3600.0, "seconds between full inventory syncs", _positive)
    batch_size: int = setting(1000, "changes per publish call", _positive)


@dataclass(frozen=True)
class ScrubSettings:
    """Background re-hashing of the store's files to find bit rot (docs/store.md)."""

    rate: int = setting(8 * 1024**2, "bytes per second the scrub reads and hashes (0: no "
                        "scrub)", None, parse_size)
    period: float = setting(7 * 86400.0, "seconds between the starts of two scrub passes (a "
                            "pass takes the longer of this and the disk's bytes / rate)",
                            _positive)


@dataclass(frozen=True)
class PrismSettings:
    """Prism-only behaviour: the public API."""

    min_copies: int = setting(1, "copies needed for an upload to succeed", _replicas)
    max_upload: int = setting(100 * 1024**3, "largest accepted upload in bytes", None, parse_size)
    purchase_life: float = setting(7200.0, "default purchase life in seconds", _positive)
    delivery_life: float = setting(21600.0, "seconds a signed store URL stays valid", _positive)
    deny_static_types: tuple[str, ...] = setting(
        ("mp4", "webm", "mkv", "mov", "m3u8", "ts"),
        "extensions refused on /static (must be purchased)", _extensions)
    video_types: tuple[str, ...] = setting(
        ("mp4", "webm", "mkv", "mov", "flv", "m4v"),
        "extensions that get start=0 appended on delivery", _extensions)
    bulk_max: int = setting(1000, "most hashes in one detail/exists call", _positive)
    session_cache_ttl: float = setting(2.0, "seconds a validated session is cached", _positive)
    tmp_dir: str = setting("", "folder for upload temp files ('' = the system temp folder)")


@dataclass(frozen=True)
class RetrieveSettings:
    """Prism fetches of remote URLs (/content/retrieve)."""

    max_size: int = setting(10 * 1024**3, "largest remote file in bytes", None, parse_size)
    timeout: float = setting(300.0, "seconds before a remote fetch is abandoned", _positive)
    allow_private: bool = setting(False, "allow loopback/private/link-local destinations")


@dataclass(frozen=True)
class LogSettings:
    """Logging."""

    format: str = setting("text", "'text' or 'json' (one object per line, for journald)",
                          _log_format)


# -- role configs -----------------------------------------------------------

@dataclass(frozen=True)
class NodeConfig:
    """The sections every role has (each role's own come after them)."""

    node: NodeSettings = section(NodeSettings, "identity of this node")
    http: HttpSettings = section(HttpSettings, "HTTP listener")
    cluster: ClusterSettings = section(ClusterSettings, "cluster membership")
    tls: TlsSettings = section(TlsSettings, "trust for outgoing https:// calls")
    log: LogSettings = section(LogSettings, "logging")


@dataclass(frozen=True)
class MasterConfig(NodeConfig):
    """Settings of a master process."""

    redis: RedisSettings = section(RedisSettings, "cluster Redis")
    master: MasterSettings = section(MasterSettings, "master behaviour")
    repair: RepairSettings = section(RepairSettings, "re-replication after a store is lost")


@dataclass(frozen=True)
class StoreConfig(NodeConfig):
    """Settings of a store process."""

    redis: RedisSettings = section(RedisSettings, "cluster Redis (ping-net votes)")
    ping: PingSettings = section(PingSettings, "ping net")
    store: StoreSettings = section(StoreSettings, "content storage")
    inventory: InventorySettings = section(InventorySettings, "inventory sync")
    scrub: ScrubSettings = section(ScrubSettings, "background re-hashing (bit rot)")


@dataclass(frozen=True)
class PrismConfig(NodeConfig):
    """Settings of a prism process."""

    http: PrismHttpSettings = section(PrismHttpSettings, "HTTP listener (and its workers)")
    redis: RedisSettings = section(RedisSettings, "cluster Redis (ping-net votes)")
    ping: PingSettings = section(PingSettings, "ping net")
    prism: PrismSettings = section(PrismSettings, "public API behaviour")
    retrieve: RetrieveSettings = section(RetrieveSettings, "remote URL fetches")


ROLE_CONFIGS: dict[str, type[RoleConfig]] = {
    "master": MasterConfig,
    "prism": PrismConfig,
    "store": StoreConfig,
}

RoleConfig = MasterConfig | PrismConfig | StoreConfig


# -- loading ----------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _convert(hint: Any, raw: object, meta: Mapping[str, Any]) -> Any:
    """Convert a TOML value to the field's type or raise ValueError."""
    parse = meta.get("parse")
    if parse is not None:
        return parse(raw)
    if hint is bool:
        if isinstance(raw, bool):
            return raw
    elif hint is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
    elif hint is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
    elif hint is str:
        if isinstance(raw, str):
            return raw
    elif typing.get_origin(hint) is tuple:
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        raise ValueError("expected a list of strings, got {}".format(_describe(raw)))
    raise ValueError("expected {}, got {}".format(_TYPE_NAMES.get(hint, hint), _describe(raw)))


def _build(cls: type[D], table: Mapping[str, Any], where: str, origin: str) -> D:
    """Build dataclass `cls` from a TOML table, checking every key."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        label = "{}{}".format(where, key)
        if key not in known:
            expected = ", ".join(sorted(known))
            raise ConfigError("{}: {}: unknown key (expected one of: {})".format(
                origin, label, expected))
        spec = known[key]
        hint = hints[key]
        if isinstance(hint, type) and is_dataclass(hint):
            if not isinstance(raw, dict):
                raise ConfigError("{}: [{}]: expected a table, got {}".format(
                    origin, label, _describe(raw)))
            values[key] = _build(hint, raw, "[{}] ".format(key), origin)
            continue
        try:
            value = _convert(hint, raw, spec.metadata)
        except ValueError as exc:
            raise ConfigError("{}: {}: {}".format(origin, label, exc)) from None
        check = spec.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError("{}: {}: {}, got {}".format(origin, label, problem, _describe(raw)))
        values[key] = value
    return cls(**values)


def cluster_key_problem(key: str) -> str | None:
    """Why `key` cannot be a cluster key (public example value, too short), or None."""
    if key == EXAMPLE_CLUSTER_KEY:
        return "the example key is public, expected a secret; make one with: " + MAKE_KEY_HINT
    if len(key) < MIN_CLUSTER_KEY_CHARS:
        return "expected at least {} characters; make one with: {}".format(
            MIN_CLUSTER_KEY_CHARS, MAKE_KEY_HINT)
    return None


def parse_config(role: str, text: str, origin: str,
                 environ: Mapping[str, str] | None = None) -> RoleConfig:
    """Parse TOML `text` for `role`; `origin` names the file in errors."""
    cls = ROLE_CONFIGS[role]
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("{}: not valid TOML: {}".format(origin, exc)) from None
    config = _build(cls, table, "", origin)
    key = (environ or {}).get(CLUSTER_KEY_ENV) or config.cluster.key
    if not key:
        raise ConfigError("{}: [cluster] key: expected a cluster key (or set ${}); make one "
                          "with: {}".format(origin, CLUSTER_KEY_ENV, MAKE_KEY_HINT))
    problem = cluster_key_problem(key)
    if problem:
        raise ConfigError("{}: [cluster] key: {}".format(origin, problem))
    config = replace(config, cluster=replace(config.cluster, key=key))
    config = _with_redis_password(config, environ or {}, origin)
    config = _with_master_urls(config, origin)
    _check_role_rules(config, origin)
    return config


def _with_redis_password(config: RoleConfig, environ: Mapping[str, str],
                         origin: str) -> RoleConfig:
    """Apply $STRETCHFS_REDIS_PASSWORD; a Redis user without any password is refused."""
    password = environ.get(REDIS_PASSWORD_ENV) or config.redis.password
    url = urlsplit(config.redis.url)
    if url.username and not (password or url.password):
        raise ConfigError("{}: [redis] password: expected the password of the Redis user in "
                          "url (or set ${})".format(origin, REDIS_PASSWORD_ENV))
    if bool(config.redis.sentinels) != bool(config.redis.service):
        missing, given = ("service", "sentinels") if config.redis.sentinels else \
            ("sentinels", "service")
        raise ConfigError("{}: [redis] {}: expected a value, since [redis] {} is set (Sentinel "
                          "mode needs both)".format(origin, missing, given))
    return replace(config, redis=replace(config.redis, password=password))


def _with_master_urls(config: RoleConfig, origin: str) -> RoleConfig:
    """Fold `[cluster] master_url` into `master_urls` (exactly one of them may be set)."""
    cluster = config.cluster
    if cluster.master_url and cluster.master_urls:
        raise ConfigError("{}: [cluster] master_url: expected either master_url or "
                          "master_urls, got both".format(origin))
    for url in cluster.master_urls:
        if _http_url(url):
            raise ConfigError("{}: [cluster] master_urls: expected http:// or https:// URLs, "
                              "got {!r}".format(origin, url))
    urls = tuple(url.rstrip("/") for url in
                 cluster.master_urls or (cluster.master_url or DEFAULT_MASTER_URL,))
    twice = sorted({url for url in urls if urls.count(url) > 1})
    if twice:
        raise ConfigError("{}: [cluster] master_urls: {!r} is listed twice".format(
            origin, twice[0]))
    return replace(config, cluster=replace(cluster, master_urls=urls, master_url=urls[0]))


def _check_role_rules(config: RoleConfig, origin: str) -> None:
    """Rules that involve more than one key."""
    if isinstance(config, PrismConfig) and config.prism.min_copies > config.cluster.replicas:
        raise ConfigError("{}: [prism] min_copies: expected at most [cluster] replicas ({}), "
                          "got {}".format(origin, config.cluster.replicas,
                                          config.prism.min_copies))
    if isinstance(config, PrismConfig):
        _check_prism_workers(config, origin)
    ping = getattr(config, "ping", None)
    if ping is not None and ping.timeout >= ping.interval:
        raise ConfigError("{}: [ping] timeout: expected less than interval ({}), got {}".format(
            origin, ping.interval, ping.timeout))
    if isinstance(config, StoreConfig) and not config.store.root:
        raise ConfigError("{}: [store] root: expected a folder path".format(origin))


def worker_reader_name(name: str, worker: int) -> str:
    """The name prism worker `worker` (1 = the first) reads the master's feeds under."""
    return name if worker <= 1 else "{}-w{}".format(name, worker)


def _check_prism_workers(config: PrismConfig, origin: str) -> None:
    """More than one worker: every listener must be tcp: or ssl: (shared with
    SO_REUSEPORT) and each worker's feed reader name must be a valid node name."""
    workers = config.http.workers
    if workers == 1:
        return
    for endpoint in config.http.listen:
        if endpoint.split(":", 1)[0] not in ("tcp", "ssl"):
            raise ConfigError("{}: [http] workers: more than 1 worker needs tcp: or ssl: "
                              "listeners, got {!r}".format(origin, endpoint))
    if not is_node_name(worker_reader_name(config.node.name, workers)):
        raise ConfigError("{}: [http] workers: [node] name {!r} is too long for {} workers "
                          "(each reads the feeds as <name>-w<N>)".format(
                              origin, config.node.name, workers))


def load_config(role: str, path: str, environ: Mapping[str, str] | None = None) -> RoleConfig:
    """Read and validate the TOML file at `path` for `role`."""
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("{}: no such file".format(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("{}: cannot read: {}".format(path, exc)) from None
    config = parse_config(role, text, path, os.environ if environ is None else environ)
    _check_ca_file(config, path)
    return config


def _check_ca_file(config: RoleConfig, origin: str) -> None:
    """A [tls] ca_file must be readable and hold a PEM certificate (checked at start, so a
    node with a bad one stops with one line instead of failing its first TLS call)."""
    ca_file = getattr(getattr(config, "tls", None), "ca_file", "")
    if not ca_file:
        return
    try:
        with open(ca_file, "rb") as handle:
            pem = handle.read()
    except OSError as exc:
        raise ConfigError("{}: [tls] ca_file: cannot read {}: {}".format(
            origin, ca_file, exc.strerror)) from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ConfigError("{}: [tls] ca_file: {} holds no PEM certificate".format(
            origin, ca_file))


def describe_keys(cls: type[DataclassInstance]) -> list[tuple[str, str, Any, str]]:
    """List (section, key, default, doc) of a role config, for docs and tests."""
    rows = []
    for sec in fields(cls):
        for item in fields(sec.default_factory):  # type: ignore[arg-type]
            default = item.default if item.default is not MISSING else None
            rows.append((sec.name, item.name, default, item.metadata.get("doc", "")))
    return rows
