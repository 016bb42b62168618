"""A streaming multipart/form-data parser (RFC 7578) that finds boundaries with bytes.find.

`MultipartParser.feed` takes the body in chunks of any size and reports each
part to a `PartSink`: `start_part(name, filename, content_type)`, its bytes
with `part_data`, then `end_part`.  Part headers are read with a few string
operations (no `email` package: that cost about 1 ms of CPU per upload), at
most `MAX_HEADER_BYTES` of them per part and of preamble; a body past its
closing boundary (the epilogue) is dropped.  Malformed input raises
InvalidInput.
"""

from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import unquote

from stretchfs.errors import InvalidInput

MAX_HEADER_BYTES = 64 * 1024
MAX_BOUNDARY_CHARS = 200
MAX_PADDING_BYTES = 998  # after a boundary, before its line end (RFC 5322's line)

_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR_RE = re.compile(r"\\(.)")

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _EPILOGUE = range(5)


class PartSink(Protocol):
    """Receives the parts of a multipart body."""

    def start_part(self, name: str, filename: str | None, content_type: str) -> None:
        """A part begins (`filename` None for a plain form field, `content_type` its
        lowercased type/subtype, "" when it has none)."""

    def part_data(self, data: bytes) -> None:
        """The next bytes of the current part."""

    def end_part(self) -> None:
        """The current part is complete."""


def split_params(value: str) -> tuple[str, dict[str, str]]:
    """`type; k=v; k="v"` -> (lowercased first item, {lowercased key: unquoted value});
    `k*=charset''percent-encoded` (RFC 8187) is decoded and wins over `k`."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    for match in _PARAM_RE.finditer(";" + rest):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = _QUOTED_PAIR_RE.sub(r"\1", raw[1:-1])
        if key.endswith("*"):
            charset, _, encoded = raw.partition("'")
            _language, _, encoded = encoded.partition("'")
            try:
                extended[key[:-1]] = unquote(encoded, encoding=charset or "utf-8",
                                             errors="replace")
            except LookupError:  # an unknown charset
                extended[key[:-1]] = unquote(encoded, errors="replace")
        else:
            params[key] = raw
    params.update(extended)
    return head.strip().lower(), params


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data` Content-Type; InvalidInput otherwise."""
    kind, params = split_params(content_type)
    if kind != "multipart/form-data":
        raise InvalidInput("expected a multipart/form-data body")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > MAX_BOUNDARY_CHARS:
        raise InvalidInput("expected a multipart/form-data body: no usable boundary")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidInput("expected a multipart/form-data body: boundary is not "
                           "ASCII") from None


def _malformed(why: str) -> InvalidInput:
    return InvalidInput("malformed multipart body: " + why)


class MultipartParser:
    """Splits a multipart body fed in chunks into parts for `sink`."""

    def __init__(self, boundary: bytes, sink: PartSink) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._keep = len(self._delimiter) - 1
        self._sink = sink
        # The first boundary may open the body without a CRLF before it.
        self._buffer = b"\r\n"
        self._state = _PREAMBLE
        self._skip_part = False
        self._scanned = 0  # bytes of a held preamble or header block searched in vain

    @property
    def complete(self) -> bool:
        """True once the closing boundary was read."""
        return self._state == _EPILOGUE

    @property
    def in_part(self) -> bool:
        """True after a boundary and before the next one or the end (a body that ends
        here was cut inside a part)."""
        return self._state in (_AFTER_DELIMITER, _HEADERS, _BODY)

    def feed(self, data: bytes) -> None:
        """Parse the next chunk; InvalidInput when the body is malformed."""
        if self._state == _EPILOGUE:
            return
        buffer = self._buffer + data if self._buffer else data
        while True:
            state = self._state
            if state == _BODY:
                buffer = self._body(buffer)
            elif state == _HEADERS:
                buffer = self._headers(buffer)
            elif state == _AFTER_DELIMITER:
                buffer = self._after_delimiter(buffer)
            elif state == _PREAMBLE:
                buffer = self._preamble(buffer)
            else:
                buffer = b""
            if self._state == state:  # needs more input
                break
            self._scanned = 0
        self._buffer = buffer

    def _preamble(self, buffer: bytes) -> bytes:
        # Search only what came since the last feed (fed a byte at a time, searching
        # the whole held block again cost ~40 µs a byte).
        at = buffer.find(self._delimiter, max(0, self._scanned - self._keep))
        if at < 0:
            if len(buffer) > MAX_HEADER_BYTES:
                raise _malformed("no boundary in the first {} bytes".format(MAX_HEADER_BYTES))
            self._scanned = len(buffer)
            return buffer
        self._state = _AFTER_DELIMITER
        return buffer[at + len(self._delimiter):]

    def _after_delimiter(self, buffer: bytes) -> bytes:
        if buffer.startswith(b"--"):
            self._state = _EPILOGUE
            return b""
        line_end = buffer.find(b"\r\n")
        padding = buffer if line_end < 0 else buffer[:line_end]
        if line_end < 0 and padding.endswith(b"\r"):
            padding = padding[:-1]
        if len(padding) > MAX_PADDING_BYTES:
            raise _malformed("a boundary line with more than {} bytes of padding".format(
                MAX_PADDING_BYTES))
        if padding != b"-" and padding.strip(b" \t"):  # only transport padding may follow
            raise _malformed("a boundary not followed by a line end")
        if line_end < 0:
            return buffer
        if padding == b"-":
            raise _malformed("a boundary not followed by a line end")
        self._state = _HEADERS
        return buffer[line_end + 2:]

    def _headers(self, buffer: bytes) -> bytes:
        if buffer.startswith(b"\r\n"):
            end, block = 2, b""
        else:
            at = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if at < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    raise _malformed("part headers longer than {} bytes".format(
                        MAX_HEADER_BYTES))
                self._scanned = len(buffer)
                return buffer
            end, block = at + 4, buffer[:at]
        if end - 2 > MAX_HEADER_BYTES:
            raise _malformed("part headers longer than {} bytes".format(MAX_HEADER_BYTES))
        self._start(block)
        self._state = _BODY
        return buffer[end:]

    def _start(self, block: bytes) -> None:
        """Read one part's header block and open the part (a part without a name is
        skipped)."""
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            text = block.decode("latin-1")
        headers: dict[str, str] = {}
        name = ""
        for line in text.split("\r\n") if text else ():
            if line[:1] in (" ", "\t") and name:  # folded continuation
                headers[name] += " " + line.strip()
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise _malformed("a part header line without a colon")
            name = name.strip().lower()
            headers[name] = value.strip()
        disposition, params = split_params(headers.get("content-disposition", ""))
        if "content-disposition" in headers and disposition != "form-data":
            raise _malformed("a part that is not form-data")
        field = params.get("name")
        self._skip_part = not field
        if self._skip_part:
            return
        kind = split_params(headers["content-type"])[0] if "content-type" in headers else ""
        self._sink.start_part(field or "", params.get("filename"), kind)

    def _body(self, buffer: bytes) -> bytes:
        at = buffer.find(self._delimiter)
        if at < 0:
            cut = len(buffer) - self._keep
            if cut <= 0:
                return buffer
            if not self._skip_part:
                self._sink.part_data(buffer[:cut])
            return buffer[cut:]
        if not self._skip_part:
            if at:
                self._sink.part_data(buffer[:at])
            self._sink.end_part()
        self._state = _AFTER_DELIMITER
        return buffer[at + len(self._delimiter):]
