"""How the `stretchfs` CLI reaches the master: URL, cluster key, one call.

The master URL and the cluster key come from `--config FILE` (any role's
TOML: a master's own listener, or a prism's/store's `[cluster] master_url`)
or from `--master URL` plus `$STRETCHFS_CLUSTER_KEY`.  An https:// master is
verified against `--ca-file`, else the config's `[tls] ca_file`, else the
system CA store.  Each command runs one coroutine against a `MasterClient` on
the reactor and returns an exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from typing import TYPE_CHECKING, Awaitable, Callable, Mapping, TextIO

from stretchfs.config import CLUSTER_KEY_ENV, MasterConfig, cluster_key_problem, load_config
from stretchfs.errors import ConfigError, PeerUnavailable, TlsRejected, UpstreamError
from stretchfs.exitcodes import EX_CONFIG
from stretchfs.wire.upstream import error_text

if TYPE_CHECKING:
    from stretchfs.wire.master import MasterClient

CLI_TIMEOUT_SECONDS = 30.0

Command = Callable[["MasterClient", argparse.Namespace, TextIO], Awaitable[int]]


def add_master_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` and `--master URL` on a subcommand."""
    parser.add_argument("--config", "-c", help="any role's TOML config (master URL and key)")
    parser.add_argument("--master", help="master base URL (key from $" + CLUSTER_KEY_ENV + ")")
    parser.add_argument("--ca-file", help="PEM bundle trusted for an https:// master "
                        "(default: the config's [tls] ca_file, else the system store)")


def _role_of(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return "master"  # load_config reports the problem
    for role in ("master", "store", "prism"):
        if role in table:
            return role
    if "retrieve" in table:
        return "prism"
    return "prism" if "ping" in table else "master"


def _listen_url(listen: str) -> str | None:
    parts = listen.split(":")
    if parts[0] not in ("tcp", "ssl") or len(parts) < 2 or not parts[1].isdigit():
        return None
    port = int(parts[1])
    if port == 0:
        return None
    host = "127.0.0.1"
    for option in parts[2:]:
        if option.startswith("interface="):
            host = option.split("=", 1)[1] or host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    scheme = "https" if parts[0] == "ssl" else "http"
    return "{}://{}:{}".format(scheme, host, port)


def resolve_master(args: argparse.Namespace, environ: Mapping[str, str]
                   ) -> tuple[tuple[str, ...], str, str]:
    """(master URLs, cluster key, CA file) from the arguments and environment;
    ConfigError if missing.  A prism's or store's config gives every master it lists."""
    urls: tuple[str, ...] = (args.master,) if args.master else ()
    key = environ.get(CLUSTER_KEY_ENV, "")
    ca_file = getattr(args, "ca_file", None) or ""
    if args.config:
        config = load_config(_role_of(args.config), args.config, environ)
        key = config.cluster.key
        ca_file = ca_file or config.tls.ca_file
        if not urls:
            own = config.http.public_url or _listen_url(config.http.listen[0]) \
                if isinstance(config, MasterConfig) else ""
            urls = (own,) if own else config.cluster.master_urls
    if not urls:
        raise ConfigError("give --master URL or --config FILE")
    if not urls[0].startswith(("http://", "https://")):
        raise ConfigError("--master: expected an http:// or https:// URL")
    if not key:
        raise ConfigError("no cluster key: set ${} or give --config FILE".format(CLUSTER_KEY_ENV))
    problem = cluster_key_problem(key)
    if problem:
        raise ConfigError("${}: {}".format(CLUSTER_KEY_ENV, problem))
    return tuple(url.rstrip("/") for url in urls), key, ca_file


def upstream_message(exc: UpstreamError) -> str:
    """The master's error text of a non-2xx answer."""
    text = error_text(exc.body)
    return "master answered {}: {}".format(exc.code, text) if text else \
        "master answered {}".format(exc.code)


async def run_command(client: MasterClient, command: Command, args: argparse.Namespace,
                      out: TextIO, err: TextIO) -> int:
    """Run one command against `client`; errors become a line on `err` and exit 1."""
    try:
        return await command(client, args, out)
    except UpstreamError as exc:
        err.write("stretchfs: {}\n".format(upstream_message(exc)))
    except TlsRejected as exc:
        err.write("stretchfs: master certificate not accepted: {} (see --ca-file)\n".format(exc))
    except PeerUnavailable as exc:
        err.write("stretchfs: master unreachable: {}\n".format(exc))
    return 1


def run_against_master(command: Command, args: argparse.Namespace,
                       environ: Mapping[str, str] | None = None) -> int:
    """Resolve the master, run `command` on the reactor, and return its exit code."""
    try:
        urls, key, ca_file = resolve_master(args, os.environ if environ is None else environ)
    except ConfigError as exc:
        sys.stderr.write("stretchfs: {}\n".format(exc))
        return EX_CONFIG
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.python.failure import Failure

    from stretchfs.wire.http import make_http_client
    from stretchfs.wire.master import MasterClient

    try:
        http = make_http_client(reactor, persistent=False, ca_file=ca_file)
    except (OSError, ValueError) as exc:
        sys.stderr.write("stretchfs: CA file: {}\n".format(exc))
        return EX_CONFIG
    client = MasterClient(http, urls, key, CLI_TIMEOUT_SECONDS, reactor)
    outcome: dict[str, int] = {"code": 1}

    def finish(code: int) -> None:
        outcome["code"] = int(code)

    def failed(failure: Failure) -> None:
        sys.stderr.write("stretchfs: {}\n".format(failure.getErrorMessage()))

    d = ensureDeferred(run_command(client, command, args, sys.stdout, sys.stderr))
    d.addCallbacks(finish, failed)
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]
    return outcome["code"]
