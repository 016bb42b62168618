"""What the Python client returns: small frozen records of the prism's answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Session:
    """A logged-in session: send `token` as X-STRETCHFS-Token."""

    token: str
    expires: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> "Session":
        """From the `session` object of a login or validate answer."""
        return cls(token=str(answer["token"]), expires=answer.get("expires"),
                   data=dict(answer.get("data") or {}))


@dataclass(frozen=True)
class Content:
    """A file the cluster holds after an upload or retrieve."""

    hash: str
    ext: str
    size: int
    copies: int
    name: str = ""
    mimetype: str = ""

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> "Content":
        """From one entry of an upload's `files`, or a retrieve answer."""
        return cls(hash=str(answer.get("hash") or answer["sha1"]),
                   ext=str(answer.get("ext") or answer.get("extension") or ""),
                   size=int(answer.get("size") or 0), copies=int(answer.get("copies") or 0),
                   name=str(answer.get("name") or ""),
                   mimetype=str(answer.get("mimetype") or ""))


@dataclass(frozen=True)
class ContentRecord:
    """What the cluster knows of a hash: `exists`, how many copies and where."""

    hash: str
    exists: bool
    count: int
    ext: str = ""
    size: int = 0
    mime_type: str = ""
    stores: tuple[str, ...] = ()

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> "ContentRecord":
        """From a detail or exists record."""
        return cls(hash=str(answer.get("hash") or answer.get("sha1")),
                   exists=bool(answer.get("exists")), count=int(answer.get("count") or 0),
                   ext=str(answer.get("ext") or ""), size=int(answer.get("size") or 0),
                   mime_type=str(answer.get("mimeType") or ""),
                   stores=tuple(answer.get("map") or ()))


@dataclass(frozen=True)
class Purchase:
    """A time-limited download right: `token` makes the link `/<token>/<filename>`."""

    token: str
    hash: str
    ext: str
    life: float
    expires: float
    referrer: tuple[str, ...] = ()
    ip: str = ""

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> "Purchase":
        """From a purchase or purchase-detail answer."""
        return cls(token=str(answer["token"]), hash=str(answer.get("hash") or answer["sha1"]),
                   ext=str(answer.get("ext") or ""), life=float(answer.get("life") or 0),
                   expires=float(answer.get("expires") or 0),
                   referrer=tuple(answer.get("referrer") or ()), ip=str(answer.get("ip") or ""))


@dataclass(frozen=True)
class Download:
    """A finished download: where it went, its size, its SHA1, bytes resumed from."""

    path: str
    size: int
    sha1: str
    resumed_from: int = 0
