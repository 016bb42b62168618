"""A small blocking client of the public prism API, as an application uses it.

Used by `stretchfs chaos` and the end-to-end tests to drive load: log in,
upload, purchase, and download by following the prism's redirect to a store
(verifying the bytes' SHA1).  Every call is bounded by a timeout.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any


class CallFailed(Exception):
    """A call did not give the expected answer; `kind` classifies it for reports."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__("{}: {}".format(kind, detail) if detail else kind)
        self.kind = kind


@dataclass
class Reply:
    """One HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body or b"null")


def request(method: str, url: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
    """One HTTP request without following redirects; connection errors raise CallFailed."""
    parts = urllib.parse.urlsplit(url)
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except (OSError, http.client.HTTPException) as exc:
        raise CallFailed("connection", "{} {}: {}".format(method, url, exc)) from None
    finally:
        connection.close()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]
              ) -> tuple[bytes, str]:
    """Encode form fields and files ({field: (filename, mimetype, data)}) as multipart."""
    boundary = "stretchfs" + secrets.token_hex(12)
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append("--{}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{}\r\n".format(
            boundary, name, value).encode())
    for name, (filename, mimetype, data) in files.items():
        chunks.append(("--{}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n"
                       "Content-Type: {}\r\n\r\n").format(boundary, name, filename,
                                                          mimetype).encode())
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append("--{}--\r\n".format(boundary).encode())
    return b"".join(chunks), "multipart/form-data; boundary=" + boundary


class PrismUser:
    """An application talking to one prism with a session."""

    def __init__(self, prism_url: str, timeout: float = 10.0) -> None:
        self.prism_url = prism_url.rstrip("/")
        self.timeout = timeout
        self.token = ""

    def _call(self, method: str, path: str, payload: Any = None, body: bytes | None = None,
              content_type: str = "application/json") -> Reply:
        headers = {"X-STRETCHFS-Token": self.token} if self.token else {}
        if payload is not None:
            body = json.dumps(payload).encode()
        if body is not None:
            headers["Content-Type"] = content_type
        return request(method, self.prism_url + path, body, headers, self.timeout)

    def _expect(self, reply: Reply, status: int, what: str) -> Any:
        if reply.status != status:
            raise CallFailed("{}-{}".format(what, reply.status), reply.body[:200].decode(
                "utf-8", "replace"))
        return reply.json()

    def login(self, username: str, password: str) -> str:
        """Log in; keeps and returns the session token."""
        answer = self._expect(self._call("POST", "/user/login",
                                         {"username": username, "password": password}),
                              200, "login")
        self.token = answer["session"]["token"]
        return self.token

    def upload(self, data: bytes, filename: str = "file.bin",
               mimetype: str = "application/octet-stream") -> dict[str, Any]:
        """Upload one file; returns its record (hash, ext, size, copies)."""
        body, content_type = multipart({}, {"file": (filename, mimetype, data)})
        answer = self._expect(self._call("POST", "/content/upload", body=body,
                                         content_type=content_type), 200, "upload")
        record = answer["files"]["file"]
        if record["hash"] != hashlib.sha1(data).hexdigest():
            raise CallFailed("upload-wrong-hash", record["hash"])
        return record

    def purchase(self, sha1: str, ext: str, life: int = 3600) -> str:
        """Purchase a content; returns the purchase token."""
        answer = self._expect(self._call("POST", "/content/purchase",
                                         {"hash": sha1, "ext": ext, "referrer": [],
                                          "life": life}), 200, "purchase")
        return answer["token"]

    def download(self, token: str, filename: str, sha1: str) -> int:
        """Follow the delivery redirect and check the bytes; returns their size."""
        reply = request("GET", "{}/{}/{}".format(self.prism_url, token, filename),
                        timeout=self.timeout)
        if reply.status != 302:
            raise CallFailed("deliver-{}".format(reply.status),
                             reply.body[:200].decode("utf-8", "replace"))
        location = reply.headers.get("location", "")
        store_reply = request("GET", location, timeout=self.timeout)
        if store_reply.status != 200:
            raise CallFailed("store-{}".format(store_reply.status), location)
        if hashlib.sha1(store_reply.body).hexdigest() != sha1:
            raise CallFailed("corrupt", location)
        return len(store_reply.body)
