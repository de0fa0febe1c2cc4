"""The HTTP/1.1 reader (transport/http11.py ``RequestReader``) fed arbitrary bytes and valid
requests, pipelined, mutated and cut into reads at random points.

- Nothing but :class:`HttpError` escapes, with 400, 413 or 431.
- Every request that comes out is within the limits: body <= ``max_body``, header bytes <=
  ``MAX_HEADER_BYTES``, at most ``MAX_HEADERS`` headers; what the reader keeps between reads is
  bounded by them too.
- Valid requests come out as they were sent, however the bytes are cut; after an upgrade the
  bytes that follow the head are handed back whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ressonance.errors import HttpError
from ressonance.exchange import Request
from ressonance.transport.http11 import MAX_HEADER_BYTES, MAX_HEADERS, RequestReader
from tests.fuzz.wire import chunks, cut_points, retained

pytestmark = pytest.mark.fuzz

STATUSES = {400, 413, 431}
MAX_BODY = 2048


@dataclass(repr=False)
class Read:
    requests: list[Request]
    rest: bytes | None  # after an upgrade: the bytes of the new protocol in the last read
    status: int | None  # the HttpError's, if one was raised
    unread: list[bytes]  # the reads not fed (after an upgrade or a fault)

    def __repr__(self) -> str:
        return f"Read({len(self.requests)} requests, status={self.status}, rest={self.rest!r:.40})"


def read(data: bytes, cuts: list[int], max_body: int = MAX_BODY) -> Read:
    """Feed ``data`` in reads as the edge does: stop at a fault or an upgrade. Checks the limits
    of every request and what the reader keeps after every read."""
    reader = RequestReader(max_body)
    out = Read([], None, None, [])
    parts = list(chunks(data, cuts))
    for i, part in enumerate(parts):
        try:
            done, rest = reader.feed(part)
        except HttpError as fault:
            assert fault.status in STATUSES, fault.status
            out.status, out.unread = fault.status, parts[i + 1 :]
            return out
        for request in done:
            check_limits(request, max_body)
        out.requests += done
        kept = retained(reader)
        assert kept <= max_body + max_body // 8 + 4 * MAX_HEADER_BYTES, kept
        if rest is not None:
            out.rest, out.unread = rest, parts[i + 1 :]
            return out
    return out


def check_limits(request: Request, max_body: int) -> None:
    assert len(request.body) <= max_body
    assert len(request.headers) <= MAX_HEADERS
    size = len(request.path) + len(request.query)
    size += sum(len(k) + len(v) + 4 for k, v in request.headers.items())
    assert size <= MAX_HEADER_BYTES + 2, size  # '?' and the joined duplicate headers' ', '
    for text in (request.method, request.path, request.query, *request.headers.values()):
        assert isinstance(text, str)


# -- valid requests ---------------------------------------------------------------------------
URL_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
segment = st.lists(URL_CHARS | st.sampled_from(["%20", "%2F", "%C3%A9"]), max_size=12).map("".join)
TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)


@dataclass
class Sent:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    chunked: bool
    pieces: list[int]  # chunk sizes when chunked
    close: bool
    upgrade: bool

    def wire(self) -> bytes:
        target = self.path + (f"?{self.query}" if self.query else "")
        lines = [f"{self.method} {target} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.close:
            lines.append("Connection: close")
        if self.upgrade:
            lines += ["Connection: Upgrade", "Upgrade: websocket"]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        elif self.body or self.method == "POST":
            lines.append(f"Content-Length: {len(self.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not self.chunked:
            return head + self.body
        out, at = [head], 0
        for n in [*self.pieces, len(self.body)]:
            piece = self.body[at : at + n]
            at += len(piece)
            if piece:
                out.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        return b"".join(out) + b"0\r\n\r\n"


@st.composite
def requests(draw: st.DrawFn, upgrade: bool = False) -> Sent:
    method = "GET" if upgrade else draw(st.sampled_from(["GET", "POST", "POST", "DELETE", "PUT"]))
    path = "/" + "/".join(draw(st.lists(segment, max_size=5)))
    query = "&".join(f"{k}={v}" for k, v in draw(st.lists(st.tuples(TOKEN, segment), max_size=6)))
    names = draw(st.lists(TOKEN, max_size=8, unique=True))
    headers = {f"x-{name}": draw(VALUE).strip() for name in names}
    body = b"" if method == "GET" else draw(st.binary(max_size=MAX_BODY + 64))
    chunked = bool(body) and draw(st.booleans())
    pieces = draw(st.lists(st.integers(1, 300), max_size=8)) if chunked else []
    close = not upgrade and draw(st.integers(0, 4)) == 0
    return Sent(method, path, query, headers, body, chunked, pieces, close, upgrade)


def matches(got: Request, sent: Sent) -> bool:
    return (
        got.method == sent.method
        and got.path == sent.path
        and got.query == sent.query
        and got.body == sent.body
        and all(got.headers.get(k) == v for k, v in sent.headers.items())
        and got.keep_alive == (not sent.close)
        and got.upgrade == sent.upgrade
    )


@given(st.lists(requests(), min_size=1, max_size=3), st.data())
def test_valid_requests_come_out_as_sent(sent: list[Sent], data: st.DataObject) -> None:
    """Pipelined, cut anywhere: the same requests, or 413 at the first body over the limit.
    Bytes after a request with ``Connection: close`` are refused (400): the reply closes."""
    wire = b"".join(s.wire() for s in sent)
    got = read(wire, data.draw(cut_points(len(wire))))
    closing = [i for i, s in enumerate(sent) if s.close]
    expected = sent[: closing[0] + 1] if closing else sent
    too_big = [i for i, s in enumerate(expected) if len(s.body) > MAX_BODY]
    if too_big:
        expected = expected[: too_big[0]]
        assert got.status == 413, got.status
        assert len(got.requests) <= len(expected)
    elif len(expected) < len(sent):
        assert got.status in (None, 400), got.status
        assert len(got.requests) <= len(expected)
    else:
        assert got.status is None and got.rest is None, got.status
        assert len(got.requests) == len(expected)
    for request, s in zip(got.requests, expected, strict=False):
        assert matches(request, s), (request, s)


@given(requests(upgrade=True), st.binary(max_size=300), st.data())
def test_the_bytes_after_an_upgrade_are_handed_back(
    sent: Sent, after: bytes, data: st.DataObject
) -> None:
    """The first WebSocket frames may come in the same read as the upgrade request."""
    head = sent.wire()
    got = read(head + after, data.draw(cut_points(len(head) + len(after))))
    assert got.status is None and len(got.requests) == 1 and matches(got.requests[0], sent)
    assert got.rest is not None
    assert got.rest + b"".join(got.unread) == after


@given(st.integers(0, 3), st.integers(1, 40_000), st.data())
@example(0, MAX_HEADER_BYTES, None)
@example(3, 20_000, None)
def test_a_head_over_the_limit_is_431(where: int, size: int, data: st.DataObject | None) -> None:
    """A long request line, header value, header name or many headers: 431 (or 400), never a
    request, and never more than the limit held."""
    big = "a" * size
    if where == 0:
        head = f"GET /{big} HTTP/1.1\r\nHost: x\r\n\r\n"
    elif where == 1:
        head = f"GET / HTTP/1.1\r\nX-Big: {big}\r\n\r\n"
    elif where == 2:
        head = f"GET / HTTP/1.1\r\nX-{big}: 1\r\n\r\n"
    else:
        head = "GET / HTTP/1.1\r\n" + "".join(f"X-{i}: 1\r\n" for i in range(size // 8)) + "\r\n"
    wire = head.encode()
    cuts = data.draw(cut_points(len(wire))) if data is not None else []
    got = read(wire, cuts)
    over = len(wire) > MAX_HEADER_BYTES + 64 or (where == 3 and size // 8 > MAX_HEADERS)
    if over:
        assert got.status in (400, 431) and not got.requests, got.status
    elif got.status is None:
        assert len(got.requests) == 1


@given(st.binary(max_size=4096), st.data())
@example(b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", None)
@example(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", None)
@example(b"GET /\x00 HTTP/1.1\r\n\r\n", None)
@example(b"GET http://[::1 HTTP/1.1\r\n\r\n", None)
def test_arbitrary_bytes_end_in_a_request_or_a_fault(
    wire: bytes, data: st.DataObject | None
) -> None:
    read(wire, data.draw(cut_points(len(wire))) if data is not None else [])


@given(
    st.lists(requests(), min_size=1, max_size=2),
    st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["flip", "insert", "drop"]))),
    st.binary(min_size=1, max_size=4),
    st.data(),
)
def test_mutated_requests_end_in_a_request_or_a_fault(
    sent: list[Sent], edits: list[tuple[int, str]], junk: bytes, data: st.DataObject
) -> None:
    wire = bytearray(b"".join(s.wire() for s in sent))
    for at, how in edits:
        i = at % len(wire)
        if how == "flip":
            wire[i] = junk[0]
        elif how == "insert":
            wire[i:i] = junk
        else:
            del wire[i]
    read(bytes(wire), data.draw(cut_points(len(wire))))


@given(st.integers(0, MAX_BODY), st.integers(1, 8), st.booleans(), st.integers(1, 16))
@example(MAX_BODY, 2, True, 16)  # 1,024 two-byte chunks
@example(MAX_BODY, 1, False, 1)  # a body a byte at a time
def test_a_body_in_tiny_pieces_costs_about_its_size(
    size: int, piece: int, chunked: bool, read_size: int
) -> None:
    """Chunks of a few bytes, or reads of a few bytes: the reader holds about the body, not an
    object per piece."""
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sent = Sent(
        "POST", "/apps/1/events", "", {}, body, chunked, [piece] * (size // piece), False, False
    )
    wire = sent.wire()
    reader = RequestReader(MAX_BODY)
    got: list[Request] = []
    for at in range(0, len(wire), read_size):
        done, _ = reader.feed(wire[at : at + read_size])
        got += done
        kept = retained(reader)
        assert kept <= MAX_BODY + MAX_BODY // 8 + 4096, kept
    assert len(got) == 1 and got[0].body == body
