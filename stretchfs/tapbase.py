"""Command-line options shared by the three twistd plugins, and their makeService.

A bad config is not a usage mistake: it prints one line on stderr
(``stretchfs-store: etc/store.toml: [ping] interval: expected ...``) and
exits with EX_CONFIG (78, see `stretchfs.exitcodes`), without twistd's usage
text or a traceback.  `[log] format = "json"` stands in for
`--logger=stretchfs.logs.json_stdout` when no `--logger` is given.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, cast

from twisted.application.service import IService
from twisted.python import usage

from stretchfs.config import RoleConfig, load_config
from stretchfs.errors import ConfigError
from stretchfs.exitcodes import EX_CONFIG

CONFIG_ENV = "STRETCHFS_CONFIG"
JSON_LOGGER = "stretchfs.logs.json_stdout"


class RoleOptions(usage.Options):
    """`-c/--config FILE` (or $STRETCHFS_CONFIG); loads and validates it."""

    role = ""
    optParameters = [["config", "c", None, "TOML config file (default: $STRETCHFS_CONFIG)"]]

    def postOptions(self) -> None:
        """Load the config now, so mistakes stop the daemon before it starts."""
        path = self["config"] or os.environ.get(CONFIG_ENV)
        if not path:
            raise usage.UsageError("--config FILE is required")
        try:
            self.settings: RoleConfig = load_config(self.role, path)
        except ConfigError as exc:
            sys.stderr.write("stretchfs-{}: {}\n".format(self.role, exc))
            sys.stderr.flush()
            raise SystemExit(EX_CONFIG) from None
        parent: Any = getattr(self, "parent", None)
        if parent is not None and not parent.get("logger") and self.settings.log.format == "json":
            # twistd's own postOptions runs after ours and imports this dotted name.
            parent["logger"] = JSON_LOGGER


def real_service(options: RoleOptions, build: Callable[..., IService], *,
                 max_per_host: int = 16, **extra: Any) -> IService:
    """`build(config, reactor=, redis=, http=, run_blocking=, **extra)` with the real
    reactor, the cluster Redis pool, an HTTP client (`max_per_host` connections per
    peer) and the reactor's thread pool: the only place a role meets the real reactor."""
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorThreads

    from stretchfs.redisstore import connect_cluster_redis
    from stretchfs.threads import thread_runner
    from stretchfs.wire.http import make_http_client

    config = options.settings
    if config.redis.sentinels:
        check_sentinels(options.role, config)
    if options.role != "master":
        check_masters(options.role, config)
    return build(config, reactor=reactor, redis=connect_cluster_redis(config.redis, reactor),
                 http=make_http_client(reactor, max_per_host=max_per_host,
                                       ca_file=config.tls.ca_file),
                 run_blocking=thread_runner(cast(IReactorThreads, reactor)), **extra)


def check_masters(role: str, config: RoleConfig, timeout: float = 2.0) -> None:
    """Ask each master in `[cluster] master_urls` for /health once: one warning line per
    master that does not answer (the role starts; its calls go to the masters that do)."""
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=config.tls.ca_file or None)
    for url in config.cluster.master_urls:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout,
                                        context=context):
                pass
        except urllib.error.HTTPError:
            pass                # it answers (a 503 too: its Redis is the master's concern)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            sys.stderr.write("stretchfs-{}: [cluster] master_urls: {} does not answer ({}); "
                             "starting anyway (calls go to the masters that answer)\n".format(
                                 role, url, reason))
            sys.stderr.flush()


def check_sentinels(role: str, config: RoleConfig) -> None:
    """Ask the Sentinels once: exit 78 when they answer that `service` cannot work, one
    warning line when none answers yet (the role starts; Redis calls answer 503)."""
    from stretchfs.redisstore import sentinel_problem

    redis = config.redis
    why, never = sentinel_problem(redis.sentinels, redis.service, min(redis.timeout, 2.0),
                                  redis.sentinel_password)
    if why:
        sys.stderr.write("stretchfs-{}: [redis] sentinels: {}{}\n".format(
            role, why, "" if never else "; starting anyway (Redis calls answer 503 until "
            "one answers)"))
        sys.stderr.flush()
    if never:
        raise SystemExit(EX_CONFIG)
