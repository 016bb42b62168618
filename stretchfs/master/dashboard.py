"""The operators' dashboard: one plain HTML page, every value escaped.

Other components add columns to the peer table through `PeerColumn`s
(e.g. the ping net's verdict and votes) and whole sections through
`extra_sections` callables returning already-escaped HTML.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from typing import Any, Callable

from stretchfs import __version__


@dataclass(frozen=True)
class PeerColumn:
    """An extra column of the peer table: a title and a text for each peer record."""

    title: str
    value: Callable[[dict[str, Any]], str]


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return '<td class="{0}">{0}</td>'.format("yes" if value else "no")
    return "<td>{}</td>".format(escape(str(value)))


def _when(epoch: float) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def render_dashboard(state: dict[str, Any], columns: list[PeerColumn],
                     sections: list[str]) -> bytes:
    """The page for `state` (peers, counts, cursors, or an `error`)."""
    out = [
        "<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
        "<title>StretchFS master {}</title>".format(escape(state.get("node", ""))),
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        ".no{color:#b00}.yes{color:#070}</style></head><body>",
        "<h1>StretchFS master {} (version {})</h1>".format(escape(state.get("node", "")),
                                                            escape(__version__)),
        "<p>Generated {}</p>".format(escape(_when(state.get("now", 0.0)))),
    ]
    if state.get("error"):
        out.append('<p class="no">{}</p>'.format(escape(state["error"])))
    else:
        out.append("<h2>Peers</h2><table><tr>")
        titles = ["name", "role", "url", "site", "zone", "active", "writable", "inventory rows",
                  "registered", "updated"] + [c.title for c in columns]
        out.append("".join("<th>{}</th>".format(escape(t)) for t in titles) + "</tr>")
        for peer in state.get("peers", []):
            cells = [_cell(peer["name"]), _cell(peer["role"]), _cell(peer["url"]),
                     _cell(peer["site"]), _cell(peer["zone"]), _cell(peer["active"]),
                     _cell(peer["writable"]), _cell(peer.get("rows", "-")),
                     _cell(_when(peer["registered"])), _cell(_when(peer["updated"]))]
            for column in columns:
                try:
                    cells.append(_cell(column.value(peer)))
                except Exception:
                    cells.append(_cell("?"))
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        out.append("<h2>Databases</h2><table>")
        for label, value in state.get("counts", []):
            out.append("<tr><th>{}</th>{}</tr>".format(escape(label), _cell(value)))
        out.append("</table>")
    out.extend(sections)
    out.append("</body></html>")
    return "\n".join(out).encode("utf-8")
