"""JSON in and out of Klein handlers, with size limits and clear errors.

Every JSON text StretchFS reads from a client or a peer goes through
`decode_json`, and every one it sends through `encode_json`: NaN, Infinity
and numbers too large for a float are not JSON, so they are refused on the
way in and never emitted.
"""

from __future__ import annotations

import json
import math
from typing import Any

from twisted.web.iweb import IRequest

from stretchfs.errors import InvalidInput, PayloadTooLarge

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"


class NonFiniteNumber(ValueError):
    """A JSON text held NaN, Infinity or a number too large for a float."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumber("{} is not a JSON number".format(name))


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber("{} is too large for a JSON number".format(text[:40]))
    return value


def decode_json(data: bytes | str) -> Any:
    """Strict JSON: ValueError when malformed or holding NaN, Infinity or an overflowing number."""
    return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON; ValueError (a bug, never sent) for a NaN or infinite float."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def read_body(request: IRequest, max_bytes: int) -> bytes:
    """The request body (already buffered by twisted.web), at most `max_bytes`."""
    length = request.getHeader(b"content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise PayloadTooLarge("request body larger than {} bytes".format(max_bytes))
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data = content.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge("request body larger than {} bytes".format(max_bytes))
    return data


def read_json(request: IRequest, max_bytes: int, default: Any = None) -> Any:
    """Parse the body as JSON; an empty body gives `default` (or 400 if None)."""
    data = read_body(request, max_bytes)
    if not data.strip():
        if default is not None:
            return default
        raise InvalidInput("expected a JSON body")
    try:
        return decode_json(data)
    except NonFiniteNumber as exc:
        raise InvalidInput("malformed JSON body: {}".format(exc)) from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("malformed JSON body") from None
    except RecursionError:
        raise InvalidInput("JSON body nested too deeply") from None


def read_json_object(request: IRequest, max_bytes: int) -> dict[str, Any]:
    """Parse the body as a JSON object; anything else is a 400."""
    value = read_json(request, max_bytes, default={})
    if not isinstance(value, dict):
        raise InvalidInput("expected a JSON object")
    return value


def write_json(request: IRequest, obj: Any, code: int = 200) -> bytes:
    """Set status and Content-Type and return the encoded JSON body.

    A NaN or infinite float in `obj` raises ValueError before anything is set,
    so the error handler answers a logged 500 instead of invalid JSON.
    """
    body = encode_json(obj)
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", JSON_CONTENT_TYPE)
    request.setHeader(b"Cache-Control", b"no-store")
    return body
