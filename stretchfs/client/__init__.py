"""The Python client of the public StretchFS API (see docs/client.md)."""

from __future__ import annotations

from stretchfs.client.api import Client, Progress
from stretchfs.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientStorage,
    IntegrityError,
    NotFound,
    ServerError,
    StretchFSError,
    Unauthorized,
    Unavailable,
)
from stretchfs.client.models import Content, ContentRecord, Download, Purchase, Session

__all__ = ["BadRequest", "Client", "Conflict", "Content", "ContentRecord", "Download",
           "Forbidden", "InsufficientStorage", "IntegrityError", "NotFound", "Progress",
           "Purchase", "ServerError", "Session", "StretchFSError", "Unauthorized",
           "Unavailable"]
