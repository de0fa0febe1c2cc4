"""The HTTP/1.1 reader and writer (transport/http11.py) without a socket: requests in pieces,
pipelined, kept alive or not, upgrades, the 400/413/431 limits, and serialize's exact bytes."""

from __future__ import annotations

import tracemalloc

import pytest

from ressonance.errors import HttpError
from ressonance.exchange import Request, Response
from ressonance.transport.http11 import MAX_HEADER_BYTES, MAX_HEADERS, RequestReader, serialize


def post(body: bytes) -> bytes:
    head = f"POST /apps/1/events HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def test_a_request_in_one_piece() -> None:
    requests, rest = RequestReader(1024).feed(post(b'{"a":1}'))
    assert rest is None
    assert [(r.method, r.path, r.body) for r in requests] == [
        ("POST", "/apps/1/events", b'{"a":1}')
    ]


def test_a_body_in_tiny_pieces_is_whole_and_costs_its_size() -> None:
    """20,000 body bytes in reads of 2 bytes hold about 20 KB, not an object per read."""
    body = bytes(range(256)) * 78 + b"xy"
    data = post(body)
    reader = RequestReader(1 << 20)
    head = data.index(b"\r\n\r\n") + 4
    assert reader.feed(data[:head]) == ([], None)
    tracemalloc.start()
    try:
        for i in range(head, len(data) - 2, 2):
            assert reader.feed(data[i : i + 2]) == ([], None)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    requests, _ = reader.feed(data[-2:])
    assert [r.body for r in requests] == [body]
    assert held < 3 * len(body), held


def read(data: bytes, max_body: int = 1024) -> tuple[list[Request], bytes | None]:
    return RequestReader(max_body).feed(data)


def refused(data: bytes, max_body: int = 1024, step: int = 0) -> tuple[int, str]:
    reader = RequestReader(max_body)
    with pytest.raises(HttpError) as info:
        for i in range(0, len(data), step or len(data)):
            reader.feed(data[i : i + (step or len(data))])
    return info.value.status, info.value.message


# what a request becomes ----------------------------------------------------------------------
def test_the_fields_of_a_request() -> None:
    data = (
        b"GET /apps/1/channels?info=user_count&filter_by_prefix=presence- HTTP/1.1\r\n"
        b"Host: x\r\nX-Many: 1\r\nx-many: 2\r\nContent-Type: text/plain\r\n\r\n"
    )
    assert read(data) == (
        [
            Request(
                method="GET",
                path="/apps/1/channels",
                query="info=user_count&filter_by_prefix=presence-",
                headers={"host": "x", "x-many": "1, 2", "content-type": "text/plain"},
                body=b"",
                keep_alive=True,
                upgrade=False,
            )
        ],
        None,
    )


def test_a_head_fed_a_byte_at_a_time() -> None:
    data = post(b'{"a":1}')
    reader = RequestReader(1024)
    for i in range(len(data) - 1):
        assert reader.feed(data[i : i + 1]) == ([], None)
        assert not reader.between_requests
    requests, rest = reader.feed(data[-1:])
    assert rest is None
    assert [(r.method, r.path, r.headers, r.body) for r in requests] == [
        ("POST", "/apps/1/events", {"host": "x", "content-length": "7"}, b'{"a":1}')
    ]
    assert reader.between_requests


def test_between_requests() -> None:
    reader = RequestReader(1024)
    assert reader.between_requests
    reader.feed(b"GET / HTTP/1.1\r\nHo")
    assert not reader.between_requests
    reader.feed(b"st: x\r\n\r\n")
    assert reader.between_requests


def test_a_chunked_body_is_dechunked() -> None:
    data = b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    requests, _ = read(data)
    assert [r.body for r in requests] == [b"abcde"]


# pipelining and keep-alive --------------------------------------------------------------------
def test_two_pipelined_requests_in_one_feed_come_out_in_order() -> None:
    data = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + post(b"second")
    requests, rest = read(data)
    assert rest is None
    assert [(r.method, r.path, r.body) for r in requests] == [
        ("GET", "/first", b""),
        ("POST", "/apps/1/events", b"second"),
    ]


def test_a_pipelined_request_cut_across_feeds() -> None:
    data = post(b"one") + post(b"two")
    cut = len(post(b"one")) + 10
    reader = RequestReader(1024)
    first, _ = reader.feed(data[:cut])
    second, _ = reader.feed(data[cut:])
    assert [r.body for r in first] == [b"one"]
    assert [r.body for r in second] == [b"two"]


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        ("1.1", None, True),
        ("1.1", "keep-alive", True),
        ("1.1", "close", False),
        ("1.1", "Close", False),
        ("1.0", None, False),
        ("1.0", "keep-alive", True),
        ("1.0", "close", False),
    ],
)
def test_keep_alive_follows_the_version_and_connection(
    version: str, connection: str | None, keep_alive: bool
) -> None:
    head = f"GET /health HTTP/{version}\r\nHost: x\r\n"
    if connection is not None:
        head += f"Connection: {connection}\r\n"
    requests, _ = read((head + "\r\n").encode())
    assert [(r.path, r.keep_alive) for r in requests] == [("/health", keep_alive)]


# upgrades ------------------------------------------------------------------------------------
UPGRADE = (
    b"GET /app/key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def test_the_bytes_after_an_upgrade_request_are_returned_as_rest() -> None:
    frame = b"\x81\x85abcd" + bytes(b ^ k for b, k in zip(b"hello", b"abcda", strict=True))
    requests, rest = read(UPGRADE + frame)
    assert [(r.path, r.query, r.upgrade) for r in requests] == [("/app/key", "protocol=7", True)]
    assert rest == frame


def test_an_upgrade_request_alone_has_an_empty_rest() -> None:
    requests, rest = read(UPGRADE)
    assert [r.upgrade for r in requests] == [True]
    assert rest == b""


def test_an_upgrade_after_a_pipelined_request() -> None:
    requests, rest = read(b"GET /health HTTP/1.1\r\n\r\n" + UPGRADE + b"\x88\x80")
    assert [(r.path, r.upgrade) for r in requests] == [("/health", False), ("/app/key", True)]
    assert rest == b"\x88\x80"


# limits and malformed input ------------------------------------------------------------------
def test_headers_of_16_kib_are_taken_and_more_is_431() -> None:
    room = MAX_HEADER_BYTES - len("/") - len("X") - 4
    requests, _ = read(b"GET / HTTP/1.1\r\nX: " + b"a" * room + b"\r\n\r\n")
    assert len(requests[0].headers["x"]) == room
    too_big = b"GET / HTTP/1.1\r\nX: " + b"a" * (room + 1) + b"\r\n\r\n"
    assert refused(too_big) == (431, "Request headers are too large")


def test_a_header_line_that_never_ends_is_431_before_it_ends() -> None:
    """httptools buffers the partial line: fed 1 KiB at a time, it is refused past 16 KiB."""
    data = b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEADER_BYTES + 1)
    assert refused(data, step=1024) == (431, "Request headers are too large")


def test_a_long_url_counts_towards_the_header_bytes() -> None:
    data = b"GET /" + b"a" * MAX_HEADER_BYTES + b" HTTP/1.1\r\n\r\n"
    assert refused(data) == (431, "Request headers are too large")


def test_100_headers_are_taken_and_101_are_431() -> None:
    def with_headers(n: int) -> bytes:
        fields = b"".join(b"H%d: v\r\n" % i for i in range(n))
        return b"GET / HTTP/1.1\r\n" + fields + b"\r\n"

    requests, _ = read(with_headers(MAX_HEADERS))
    assert len(requests[0].headers) == MAX_HEADERS
    assert refused(with_headers(MAX_HEADERS + 1)) == (431, "Too many headers")


def test_a_body_of_max_body_is_taken_and_one_byte_more_is_413() -> None:
    assert [r.body for r in read(post(b"x" * 100), max_body=100)[0]] == [b"x" * 100]
    assert refused(post(b"x" * 101), max_body=100) == (413, "Request body is too large")


def test_a_chunked_body_over_max_body_is_413() -> None:
    chunk = b"x" * 60
    data = b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    data += b"3c\r\n" + chunk + b"\r\n3c\r\n" + chunk + b"\r\n0\r\n\r\n"
    assert refused(data, max_body=100) == (413, "Request body is too large")
    assert refused(data, max_body=100, step=7) == (413, "Request body is too large")


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
    ],
)
def test_malformed_requests_are_400(data: bytes) -> None:
    assert refused(data) == (400, "Malformed HTTP request")


def test_an_invalid_request_target_is_400() -> None:
    assert refused(b"GET http://[bad HTTP/1.1\r\n\r\n") == (400, "Invalid request target")


# serialize -----------------------------------------------------------------------------------
def test_serialize_a_json_response_kept_alive() -> None:
    response = Response(200, b'{"ok":true}')
    assert serialize(response, keep_alive=True) == (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 11\r\n"
        b"Connection: keep-alive\r\n\r\n"
        b'{"ok":true}'
    )


def test_serialize_extra_headers_and_close() -> None:
    response = Response(503, b"{}", headers=[("Retry-After", "2")])
    assert serialize(response, keep_alive=False) == (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 2\r\n"
        b"Connection: close\r\n"
        b"Retry-After: 2\r\n\r\n"
        b"{}"
    )


def test_serialize_text_an_empty_body_and_an_unknown_status() -> None:
    assert serialize(Response(299, b"", "text/plain"), keep_alive=True) == (
        b"HTTP/1.1 299 Unknown\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: 0\r\n"
        b"Connection: keep-alive\r\n\r\n"
    )


def test_serialize_counts_bytes_not_characters() -> None:
    body = '{"name":"é"}'.encode()
    assert b"\r\nContent-Length: 13\r\n" in serialize(Response(200, body), keep_alive=True)


def test_a_serialized_response_reads_back() -> None:
    """The status line carries the reason phrase; Content-Length is the body's length."""
    parser_input = serialize(Response(431, b'{"error":"x"}'), keep_alive=False)
    head, body = parser_input.split(b"\r\n\r\n", 1)
    status_line, *fields = head.decode().split("\r\n")
    assert status_line == "HTTP/1.1 431 Request Header Fields Too Large"
    assert dict(f.split(": ", 1) for f in fields)["Content-Length"] == str(len(body))
