"""A private nginx for tests, benches and the dev cluster: temp prefix, loopback port.

The server block it serves is rendered by `stretchfs.store.nginxconf`;
`store_front` is the nginx that `stretchfs dev up --nginx` puts in front of
each store (it checks the delivery signatures and serves the files itself).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field

from stretchfs.devcluster.process import stop_process
from stretchfs.store.nginxconf import read_template, render_store_server

MIME_TYPES = "/etc/nginx/mime.types"
NOT_INSTALLED = "nginx is not installed (apt-get install nginx)"


def nginx_binary() -> str | None:
    """The nginx executable, or None when nginx is not installed."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


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
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 10.0, detach: bool = False) -> None:
        """Write the config, start nginx, wait until the port accepts connections
        (`detach`: in its own session, so it outlives the caller's terminal)."""
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError(NOT_INSTALLED)
        os.makedirs(os.path.join(self.prefix, "temp"), exist_ok=True)
        conf = os.path.join(self.prefix, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(main_conf(self.prefix, self.body, self.workers))
        log = open(os.path.join(self.prefix, "stderr.log"), "ab")
        self.process = subprocess.Popen([binary, "-p", self.prefix, "-c", conf],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=detach)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("nginx exited: {}".format(self.error_log()))
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
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


def store_front(prefix: str, *, host: str, port: int, root: str, secret: str,
                upstream: str) -> NginxProcess:
    """An nginx on `host:port` in front of the store at `upstream` whose files are in
    `root`: signed downloads checked with `secret` and served from disk, the rest
    proxied (the `stretchfs-store.conf` template)."""
    body = render_store_server(read_template(), listen="{}:{}".format(host, port), root=root,
                               secret=secret, upstream=upstream)
    return NginxProcess(prefix, body, port, host=host)
