"""Routes every role answers: welcome, ping, health and metrics.

They read the API's `readiness`, `metrics_registry` and `node_name` (see
`roles.NodeAPI`).
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from prometheus_client import generate_latest
from twisted.web.iweb import IRequest

from stretchfs import __version__
from stretchfs.metrics import METRICS_CONTENT_TYPE
from stretchfs.web.jsonio import write_json

WELCOME_MESSAGE = "Welcome to StretchFS version {}".format(__version__)


def add_common_routes(app: Klein, role: str, welcome: bool = True) -> None:
    """Register `/` (unless `welcome` is False), `/ping`, `/health`, `/metrics` on `app`."""

    if welcome:
        @app.route("/", methods=["GET", "POST"])
        def get_welcome(self: Any, request: IRequest) -> bytes:
            return write_json(request, {"message": WELCOME_MESSAGE})

    @app.route("/ping", methods=["GET", "POST"])
    def get_ping(self: Any, request: IRequest) -> bytes:
        return write_json(request, {"pong": "pong"})

    @app.route("/health", methods=["GET", "HEAD"])
    def get_health(self: Any, request: IRequest) -> bytes:
        body: dict[str, Any] = {"role": role, "name": self.node_name, "version": __version__}
        body.update(getattr(self, "health_details", dict)())
        if self.readiness.ready:
            body["status"] = "ok"
            return write_json(request, body)
        reasons = self.readiness.reasons
        body.update(status="unavailable", error="not ready: " + "; ".join(reasons),
                    reasons=reasons)
        return write_json(request, body, 503)

    @app.route("/metrics", methods=["GET"])
    def get_metrics(self: Any, request: IRequest) -> bytes:
        request.setHeader(b"Content-Type", METRICS_CONTENT_TYPE.encode("ascii"))
        return generate_latest(self.metrics_registry)
