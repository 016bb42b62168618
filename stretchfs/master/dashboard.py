"""The operators' dashboard: its static page and the JSON it refreshes itself from.

The page (`static/dashboard.html`, `.css`, `.js`: plain files, no build step,
nothing from a CDN) polls `GET /dashboard/state` every few seconds and
renders it with `textContent` only.  `dashboard_state` assembles that JSON
from what the master already has: the peer registry, the ping net's cached
verdicts (`ClusterVerdicts`), the latest node probes (`NodeProbe`: disk
space of stores, mirror lag of prisms), the copies counters, the counts
and cursors of the databases, and the repair planner's status
(`repairstatus.repair_status`, docs/repair.md).
"""

from __future__ import annotations

from html import escape
from importlib import resources
from typing import TYPE_CHECKING, Any

from stretchfs import __version__
from stretchfs.master.repairstatus import repair_status

if TYPE_CHECKING:
    from stretchfs.master.api import MasterAPI

STATIC_TYPES = {"dashboard.css": b"text/css; charset=utf-8",
                "dashboard.js": b"text/javascript; charset=utf-8"}


def static_file(name: str) -> bytes:
    """One of the dashboard's static files, from the package."""
    return resources.files("stretchfs.master").joinpath("static", name).read_bytes()


def page(name: str, **values: str) -> bytes:
    """An HTML page of the package with `{{name}}` placeholders filled in, escaped."""
    text = static_file(name).decode("utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", escape(value))
    return text.encode("utf-8")


async def dashboard_state(api: MasterAPI) -> dict[str, Any]:
    """Everything the dashboard shows, read from `api` now."""
    peers = await api.peers.list()
    rows = await api.inventory.store_rows([p["name"] for p in peers if p["role"] == "store"])
    verdicts, probe = api.verdicts, api.probe
    nodes = []
    for peer in peers:
        name = peer["name"]
        result = probe.results.get(name)
        node = {key: peer.get(key) for key in ("name", "role", "url", "site", "zone", "active",
                                               "writable", "drained", "updated")}
        node["health"] = "unknown" if result is None else "ok" if result["ok"] else "down"
        node["probe"] = result
        node["pingnet"] = verdicts.summary(name)
        if name in rows:
            node["rows"] = rows[name]
        nodes.append(node)
    return {
        "node": api.node_name, "version": __version__, "now": api.clock.seconds(),
        "nodes": nodes,
        "copies": await api.inventory.copies(),
        "counts": {"content": (await api.inventory.counts())["content"],
                   "purchases": await api.purchases.count(),
                   "users": await api.users.count()},
        "cursors": {"inventory": await api.inventory.cursor(),
                    "purchases": await api.purchases.cursor()},
        "long_polls": api.waiters.waiting("inventory") + api.waiters.waiting("purchases"),
        "repair": await repair_status(api.redis, api.keys, api.config,
                                      api.clock.seconds(), peers),
    }
