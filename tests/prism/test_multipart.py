"""The streaming multipart/form-data parser: parts, chunking, limits, malformed bodies."""

from __future__ import annotations

import os

import pytest

from stretchfs.errors import InvalidInput
from stretchfs.prism.multipart import (
    MAX_HEADER_BYTES,
    MultipartParser,
    boundary_of,
    split_params,
)
from tests.prism.harness import multipart


class Parts:
    """A PartSink that records what it is told."""

    def __init__(self) -> None:
        self.parts: list[dict[str, object]] = []
        self.open = False

    def start_part(self, name: str, filename: str | None, content_type: str) -> None:
        assert not self.open
        self.open = True
        self.parts.append({"name": name, "filename": filename, "type": content_type,
                           "data": b""})

    def part_data(self, data: bytes) -> None:
        assert self.open and data
        self.parts[-1]["data"] += data  # type: ignore[operator]

    def end_part(self) -> None:
        assert self.open
        self.open = False


def _parse(body: bytes, boundary: bytes = b"XyZzY0123", chunk: int | None = None
           ) -> tuple[Parts, MultipartParser]:
    sink = Parts()
    parser = MultipartParser(boundary, sink)
    step = chunk or len(body) or 1
    for offset in range(0, len(body), step):
        parser.feed(body[offset:offset + step])
    return sink, parser


def test_fields_and_files_come_out_whole_whatever_the_chunk_size() -> None:
    """Every chunking of one body (1 byte up to all of it) gives the same parts."""
    data = os.urandom(3000) + b"\r\n--XyZzY012" + b"\r\n-" + os.urandom(100)
    body, _ = multipart({"title": "hello", "empty": ""},
                        {"file": ("movie.mp4", "video/mp4", data),
                         "other": ("n.bin", "", b"")})
    expected = [{"name": "title", "filename": None, "type": "", "data": b"hello"},
                {"name": "empty", "filename": None, "type": "", "data": b""},
                {"name": "file", "filename": "movie.mp4", "type": "video/mp4", "data": data},
                {"name": "other", "filename": "n.bin", "type": "", "data": b""}]
    for chunk in (1, 2, 3, 7, 13, 64, 1000, len(body)):
        sink, parser = _parse(body, chunk=chunk)
        assert sink.parts == expected, chunk
        assert parser.complete and not parser.in_part and not sink.open


def test_preamble_epilogue_padding_and_header_case_are_accepted() -> None:
    """A preamble, an epilogue, padding after a boundary and header names in any case
    are fine; the Content-Type's parameters are dropped and it is lowercased."""
    body = (b"preamble text\r\n--b1 \t\r\nCONTENT-DISPOSITION: form-data; NAME=f; "
            b"filename=\"a \\\"q\\\".txt\"\r\ncontent-type: Text/HTML; charset=utf-8\r\n\r\n"
            b"<p>\r\n--b1--\r\nepilogue --b1\r\n")
    sink, parser = _parse(body, b"b1")
    assert sink.parts == [{"name": "f", "filename": 'a "q".txt', "type": "text/html",
                           "data": b"<p>"}]
    assert parser.complete


def test_rfc8187_filename_wins_and_a_part_without_a_name_is_skipped() -> None:
    """`filename*=UTF-8''...` is decoded and preferred; a nameless part is dropped."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.txt\"; "
            b"filename*=UTF-8''na%C3%AFve.txt\r\n\r\nA\r\n"
            b"--b\r\nContent-Disposition: form-data\r\n\r\nlost\r\n"
            b"--b\r\n\r\nno headers\r\n"
            b"--b\r\nContent-Disposition: form-data; name=g\r\n\r\nB\r\n--b--")
    sink, _ = _parse(body, b"b", chunk=5)
    assert [(p["name"], p["filename"], p["data"]) for p in sink.parts] == [
        ("f", "naïve.txt", b"A"), ("g", None, b"B")]


def test_a_cut_body_is_still_inside_a_part() -> None:
    """A body that ends after a boundary, inside headers or inside data is `in_part`."""
    body, _ = multipart({"note": "hello"}, {})
    for cut in (body.index(b"\r\nContent"), body.index(b"name"), body.index(b"hello") + 2,
                len(body) - len(b"--XyZzY0123--\r\n") - 1):
        _, parser = _parse(body[:cut])
        assert parser.in_part and not parser.complete, cut
    _, parser = _parse(b"only a preamble")
    assert not parser.in_part and not parser.complete


@pytest.mark.parametrize("body", [
    b"--b\r\nContent-Disposition: form-data; name=a\r\nno colon here\r\n\r\nx\r\n--b--",
    b"--bXYZ\r\n",
    b"--b-x",
    b"--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--",
])
def test_malformed_bodies_are_invalid_input(body: bytes) -> None:
    """Garbage after a boundary, a header without a colon, a non-form-data part: 400."""
    with pytest.raises(InvalidInput, match="malformed multipart body"):
        _parse(body, b"b")


def test_endless_headers_or_preamble_are_refused_not_buffered() -> None:
    """Part headers or a preamble that never end are refused past MAX_HEADER_BYTES."""
    for start in (b"--b\r\nContent-Disposition: form-data; name=\"", b""):
        sink = Parts()
        parser = MultipartParser(b"b", sink)
        parser.feed(start)
        with pytest.raises(InvalidInput):
            for _ in range(MAX_HEADER_BYTES // 4096 + 2):
                parser.feed(b"a" * 4096)
        assert sink.parts == []


def test_boundary_of_reads_quoted_and_plain_boundaries() -> None:
    """The boundary parameter, quoted or not; anything but multipart/form-data is 400."""
    assert boundary_of("multipart/form-data; boundary=abc") == b"abc"
    assert boundary_of('Multipart/Form-Data; charset=x; boundary="a b;c"') == b"a b;c"
    for bad in ("text/plain; boundary=abc", "multipart/form-data", "multipart/form-data; "
                "boundary=", "multipart/form-data; boundary=" + "x" * 201, ""):
        with pytest.raises(InvalidInput):
            boundary_of(bad)
    assert split_params("form-data; name=a ; filename=\"\"") == (
        "form-data", {"name": "a", "filename": ""})


def _outcome(body: bytes, cuts: tuple[int, ...]) -> object:
    sink = Parts()
    parser = MultipartParser(b"bb", sink)
    start = 0
    try:
        for cut in (*cuts, len(body)):
            parser.feed(body[start:cut])
            start = cut
    except InvalidInput as exc:
        return str(exc)
    return sink.parts, parser.complete, parser.in_part


@pytest.mark.parametrize("body", [
    b"pre\r\n--bb\r\n\r\nX\r\n--bb \r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n"
    b"\r\n\r\n\r\n--bb--",
    b"--bb\r\nContent-Disposition: form-data; name=f\r\n\r\n--bb\r\n-\r\r\n\r\n--bb--",
    b"--bb\r\nContent-Disposition: form-data; name=f\r\n\r\nabc\r\n--bbx\r\n--bb--",
    b"--bb\r\nContent-Disposition: form-data; name=f\r\n\r\nabc\r\n--bb\r\n",
    b"--bb\nContent-Disposition: form-data; name=f\n\nabc\n--bb--",
    b"\r\n--b\r\n-\r\n--bb\r\nContent-Disposition: form-data; name=f\r\nX: \r\r\n\r\n"
    b"\r\n\r\n--bb--",
])
def test_every_split_into_three_chunks_gives_the_same_outcome(body: bytes) -> None:
    """Cutting a body (boundary-like data, CR/LF oddities, cut or malformed ones) into
    three chunks at every pair of positions gives the same parts, or the same error."""
    whole = _outcome(body, ())
    assert all(_outcome(body, (i, j)) == whole
               for i in range(len(body) + 1) for j in range(i, len(body) + 1))


def test_endless_padding_after_a_boundary_is_refused_early() -> None:
    """Transport padding after a boundary is refused past MAX_PADDING_BYTES (a line of
    the RFC 5322 size): held and searched again per read, 64 KiB of it fed a byte at a
    time cost ~9 s of reactor CPU."""
    from stretchfs.prism.multipart import MAX_PADDING_BYTES

    parser = MultipartParser(b"b", Parts())
    parser.feed(b"--b" + b" " * (MAX_PADDING_BYTES - 1) + b"\t\r")
    with pytest.raises(InvalidInput, match="boundary line"):
        parser.feed(b" ")
    body = b"Content-Disposition: form-data; name=a\r\n\r\nx\r\n--b--"
    sink, parser = _parse(b"--b" + b" " * MAX_PADDING_BYTES + b"\r\n" + body, b"b")
    assert parser.complete and sink.parts[0]["data"] == b"x"
    with pytest.raises(InvalidInput, match="boundary line"):  # in one chunk alike
        _parse(b"--b" + b" " * (MAX_PADDING_BYTES + 1) + b"\r\n" + body, b"b")
