"""StretchFS: a self-healing content distribution cluster on Twisted."""

from __future__ import annotations

__version__ = "1.4.0"
