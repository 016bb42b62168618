"""`GET /pingnet/status`: a node's own view of the ping net.

`add_pingnet_routes(app)` is called in the class body of a prism or store
API whose instances have a `pingnet` attribute (its `PingNet`, given at
construction, or None when the ping net is disabled).  The master's cluster
view is in `master/pingview.py`.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from stretchfs.errors import NotReady
from stretchfs.web.auth import cluster_key_required
from stretchfs.web.jsonio import write_json


def add_pingnet_routes(app: Klein) -> None:
    """Register `GET /pingnet/status` (this node's view, cluster key required: a prism's
    listener is public, and peer names and addresses are not) on a prism or store app."""

    @app.route("/pingnet/status", methods=["GET"])
    @cluster_key_required
    def get_pingnet_status(self: Any, request: IRequest) -> bytes:
        net = self.pingnet
        if net is None:
            raise NotReady("the ping net is disabled on this node")
        return write_json(request, net.status())
