"""Render etc/nginx/stretchfs-store.conf, and run a private nginx for tests and benches.

    python -m stretchfs.store.nginxconf --config etc/store.toml --listen 80 \\
        --upstream 127.0.0.1:8162 > /etc/nginx/conf.d/stretchfs-store1.conf
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from stretchfs.devcluster.process import stop_process
from stretchfs.exitcodes import EX_CONFIG
from stretchfs.signing import delivery_secret

TEMPLATE_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "nginx",
                             "stretchfs-store.conf")
MIME_TYPES = "/etc/nginx/mime.types"


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


def main_conf(prefix: str, body: str, workers: int = 1) -> str:
    """A complete nginx.conf that keeps every file under `prefix` and runs in the foreground."""
    temp = os.path.join(prefix, "temp")
    # Run as root, nginx's workers would switch to `nobody` and could not read
    # private temp folders; this private instance keeps the caller's user.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return user + """daemon off;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    include {mime};
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{body}
}}
""".format(workers=workers, prefix=prefix, mime=MIME_TYPES, temp=temp, body=body)


@dataclass
class NginxProcess:
    """An nginx of our own: temp prefix, loopback port, stopped by its PID only."""

    prefix: str
    body: str
    port: int
    workers: int = 1
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start nginx, wait until the port accepts connections."""
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        os.makedirs(os.path.join(self.prefix, "temp"), exist_ok=True)
        conf = os.path.join(self.prefix, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(main_conf(self.prefix, self.body, self.workers))
        log = open(os.path.join(self.prefix, "stderr.log"), "ab")
        self.process = subprocess.Popen([binary, "-p", self.prefix, "-c", conf],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("nginx exited: {}".format(self.error_log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx not listening on {}".format(self.port))

    def error_log(self) -> str:
        """What nginx wrote to its logs."""
        text = ""
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.prefix, name), encoding="utf-8",
                          errors="replace") as handle:
                    text += handle.read()
            except FileNotFoundError:
                pass
        return text

    def stop(self, timeout: float = 10.0) -> None:
        """Stop our nginx (TERM to its master PID, KILL after `timeout`)."""
        stop_process(self.process, timeout)


def read_template() -> str:
    """The example server block shipped in etc/nginx/."""
    with open(os.path.abspath(TEMPLATE_PATH), encoding="utf-8") as handle:
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
    from stretchfs.config import load_config
    from stretchfs.errors import ConfigError

    args = build_parser().parse_args(argv)
    try:
        config = load_config("store", args.config)
    except ConfigError as exc:
        sys.stderr.write("{}\n".format(exc))
        return EX_CONFIG
    sys.stdout.write(render_store_server(read_template(), listen=args.listen,
                                         root=config.store.root,
                                         secret=delivery_secret(config.cluster.key),
                                         upstream=args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
