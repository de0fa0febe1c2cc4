"""The HTTP/1.1 request reader: requests in pieces, and what a request in assembly costs."""

from __future__ import annotations

import tracemalloc

from ressonance.transport.http11 import RequestReader


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
