"""The upload body: multipart framing, hashing on the way, bounded pieces, retries."""

from __future__ import annotations

import hashlib
import io
import os

from stretchfs.client.multipart import CHUNK_BYTES, UploadBody
from stretchfs.prism.multipart import MultipartParser, boundary_of


class Part:
    """One part as the prism's parser hands it over."""

    def __init__(self) -> None:
        self.value = b""
        self.multipart_filename: str | None = None


class Parts:
    """Collects the parts by name."""

    def __init__(self) -> None:
        self.parts: dict[str, Part] = {}
        self._current = Part()

    def start_part(self, name: str, filename: str | None, content_type: str) -> None:
        self._current = self.parts.setdefault(name, Part())
        self._current.multipart_filename = filename

    def part_data(self, data: bytes) -> None:
        self._current.value += data

    def end_part(self) -> None:
        self._current = Part()


def _parse(body: UploadBody, pieces: list[bytes]) -> tuple[Part, Part]:
    """Feed the pieces to the parser the prism uses: (the file part, the `note` field)."""
    sink = Parts()
    parser = MultipartParser(boundary_of(body.headers["Content-Type"]), sink)
    for piece in pieces:
        parser.feed(piece)
    assert parser.complete
    return sink.parts.get("file", Part()), sink.parts.get("note", Part())


def test_the_body_is_a_form_the_prisms_parser_reads_with_its_length_declared() -> None:
    """Fields and the file part parse back as sent; Content-Length is the body's length."""
    data = os.urandom(CHUNK_BYTES * 2 + 1000)
    body = UploadBody(io.BytesIO(data), "a b.bin", fields={"note": "hello"})
    pieces = list(body)
    file, note = _parse(body, pieces)
    assert file.value == data and file.multipart_filename == "a b.bin"
    assert note.value == b"hello"
    assert int(body.headers["Content-Length"]) == sum(len(piece) for piece in pieces)
    assert body.hexdigest() == hashlib.sha1(data).hexdigest()


def test_quotes_and_line_breaks_in_a_file_name_are_escaped() -> None:
    """A file name cannot end its header or add one: `"` and CR LF are percent-encoded."""
    body = UploadBody(io.BytesIO(b"x"), 'evil".bin\r\nX-Other: 1')
    head = b"".join(body).split(b"\r\n\r\n", 1)[0]
    assert b'filename="evil%22.bin%0D%0AX-Other: 1"' in head
    assert b"\r\nX-Other" not in head


def test_a_small_file_is_one_piece_and_a_large_one_bounded_pieces() -> None:
    """A 4 KiB body goes out in one write; a large file never in pieces above a chunk."""
    small = UploadBody(io.BytesIO(os.urandom(4096)), "s.bin")
    assert len(list(small)) == 1
    large = UploadBody(io.BytesIO(os.urandom(CHUNK_BYTES * 3 + 5)), "l.bin")
    pieces = list(large)
    assert len(pieces) == 4
    assert max(len(piece) for piece in pieces) <= CHUNK_BYTES + 512


def test_an_empty_file_is_a_valid_form() -> None:
    """A zero-byte file still sends a complete part (and hashes to the empty SHA1)."""
    body = UploadBody(io.BytesIO(b""), "empty.bin")
    file, _ = _parse(body, list(body))
    assert file.value == b"" and file.multipart_filename == "empty.bin"
    assert body.hexdigest() == hashlib.sha1(b"").hexdigest()


def test_sending_again_starts_over_from_where_the_source_stood() -> None:
    """A retry re-reads from the source's starting offset; hash and progress restart."""
    source = io.BytesIO(b"skip" + b"payload" * 1000)
    source.seek(4)
    seen: list[tuple[int, int | None]] = []
    body = UploadBody(source, "p.bin", progress=lambda done, total: seen.append((done, total)))
    first = b"".join(body)
    seen.clear()
    second = b"".join(body)
    assert first == second
    assert body.hexdigest() == hashlib.sha1(b"payload" * 1000).hexdigest()
    assert seen == [(7000, 7000)]


def test_a_file_that_grows_while_sent_is_cut_at_its_declared_size(tmp_path) -> None:
    """Bytes appended after the length was taken are neither sent nor hashed."""
    path = tmp_path / "growing.bin"
    path.write_bytes(b"a" * 5000)
    with open(path, "rb") as handle:
        body = UploadBody(handle, "g.bin")
        with open(path, "ab") as more:
            more.write(b"b" * 5000)
        pieces = list(body)
    file, _ = _parse(body, pieces)
    assert file.value == b"a" * 5000
    assert int(body.headers["Content-Length"]) == sum(len(piece) for piece in pieces)
    assert body.hexdigest() == hashlib.sha1(b"a" * 5000).hexdigest()


class _Pipe(io.RawIOBase):
    """An unseekable source (a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self._data.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def test_an_unseekable_source_is_sent_once_without_a_length() -> None:
    """A pipe has no Content-Length (httpx sends it chunked) and cannot be retried."""
    data = os.urandom(CHUNK_BYTES + 10)
    body = UploadBody(io.BufferedReader(_Pipe(data)), "pipe.bin")
    assert "Content-Length" not in body.headers and not body.seekable()
    file, _ = _parse(body, list(body))
    assert file.value == data
    assert body.hexdigest() == hashlib.sha1(data).hexdigest()
