"""Render the nginx server block that serves a store's signed downloads from disk.

The template ships with the package (`stretchfs/store/stretchfs-store.conf`;
`etc/nginx/stretchfs-store.conf` links to it).

    python -m stretchfs.store.nginxconf --config etc/store.toml --listen 80 \\
        --upstream 127.0.0.1:8162 > /etc/nginx/conf.d/stretchfs-store1.conf
"""

from __future__ import annotations

import argparse
import os
import sys

from stretchfs.exitcodes import EX_CONFIG
from stretchfs.wire.signing import delivery_secret

TEMPLATE_PATH = os.path.join(os.path.dirname(__file__), "stretchfs-store.conf")


def render_store_server(template: str, *, listen: str, root: str, secret: str,
                        upstream: str) -> str:
    """The template with its four placeholders replaced outside comment lines.

    Comment lines (the file's own header, which names the placeholders) are
    left as written, so the rendered file still explains itself and the
    secret appears only where nginx reads it.
    """
    values = (("__LISTEN__", listen), ("__STORE_ROOT__", os.path.abspath(root)),
              ("__DELIVERY_SECRET__", secret), ("__STORE_UPSTREAM__", upstream))
    for name, value in values:
        if any(c in value for c in ";{}\"'\n"):
            raise ValueError("unsafe value for {}".format(name))
    lines = template.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("#"):
            for name, value in values:
                line = line.replace(name, value)
            lines[index] = line
    return "".join(lines)


def read_template() -> str:
    """The server block template shipped with the package."""
    with open(TEMPLATE_PATH, encoding="utf-8") as handle:
        return handle.read()


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m stretchfs.store.nginxconf`."""
    parser = argparse.ArgumentParser(prog="python -m stretchfs.store.nginxconf",
                                     description="Print the nginx server block for one store.")
    parser.add_argument("--config", required=True, help="the store's TOML config")
    parser.add_argument("--listen", default="80",
                        help="nginx's listen directive value (default %(default)s)")
    parser.add_argument("--upstream", required=True, help="host:port of the store process")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the rendered server block for a store config."""
    from stretchfs.config import StoreConfig, load_config
    from stretchfs.errors import ConfigError

    args = build_parser().parse_args(argv)
    try:
        config = load_config("store", args.config)
    except ConfigError as exc:
        sys.stderr.write("{}\n".format(exc))
        return EX_CONFIG
    assert isinstance(config, StoreConfig)
    sys.stdout.write(render_store_server(read_template(), listen=args.listen,
                                         root=config.store.root,
                                         secret=delivery_secret(config.cluster.key),
                                         upstream=args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
