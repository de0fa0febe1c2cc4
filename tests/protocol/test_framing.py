"""Server frame encoding and the client frame parser (RFC 6455 §5)."""

from __future__ import annotations

import os
import struct
import tracemalloc

import pytest

from ressonance.protocol import framing
from ressonance.transport.frames import MAX_FRAGMENTS, FrameError, FrameParser, parse_close


def client_frame(
    opcode: int, payload: bytes, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_encode_lengths(size: int) -> None:
    frame = framing.encode(framing.OP_TEXT, b"x" * size)
    assert frame[0] == 0x81
    assert frame.endswith(b"x" * size)


def test_parse_in_pieces_and_fragments() -> None:
    parser = FrameParser(1024)
    data = client_frame(1, b"hel", fin=False) + client_frame(0, b"lo") + client_frame(9, b"p")
    out = []
    for i in range(len(data)):
        out.extend(parser.feed(data[i : i + 1]))
    assert [(m.opcode, m.payload) for m in out] == [(1, b"hello"), (9, b"p")]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_frames_read_a_byte_at_a_time(size: int) -> None:
    """Every length form (7-bit, 16-bit, 64-bit) split at every byte, and in uneven pieces."""
    data = client_frame(1, b"x" * size) + client_frame(9, b"p") + client_frame(1, b"y" * size)
    expected = [(1, b"x" * size), (9, b"p"), (1, b"y" * size)]
    for step in (1, 7, 4099):
        parser = FrameParser(1 << 20)
        out = []
        for i in range(0, len(data), step):
            out.extend(parser.feed(data[i : i + step]))
        assert [(m.opcode, m.payload) for m in out] == expected


def test_a_message_may_come_in_max_fragments() -> None:
    middle = client_frame(0, b"", fin=False) * (MAX_FRAGMENTS - 2)
    data = client_frame(1, b"a", fin=False) + middle + client_frame(0, b"b")
    assert [m.payload for m in FrameParser(1024).feed(data)] == [b"ab"]


def test_empty_continuation_frames_cannot_go_on_forever() -> None:
    parser = FrameParser(1024)
    parser.feed(client_frame(1, b"a", fin=False))
    empty = client_frame(0, b"", fin=False)
    with pytest.raises(FrameError) as info:
        for _ in range(MAX_FRAGMENTS):
            parser.feed(empty)
    assert info.value.code == 1009


def test_fragments_cost_their_payload_not_an_object_each() -> None:
    """1,000 fragments of 2 bytes hold about 2,000 bytes (a list of bytes objects held ~48 KB)."""
    parser = FrameParser(1 << 20)
    parser.feed(client_frame(1, b"{", fin=False))
    data = b"".join(client_frame(0, b"xx", fin=False) for _ in range(1000))
    tracemalloc.start()
    try:
        assert parser.feed(data) == []
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 8 * 1024, held


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(1, b"x", masked=False), 1002),
        (client_frame(1, b"x", rsv=0x40), 1002),
        (client_frame(3, b"x"), 1002),
        (client_frame(9, b"x", fin=False), 1002),
        (client_frame(9, b"x" * 126), 1002),
        (client_frame(0, b"x"), 1002),
        (client_frame(1, b"x" * 2000), 1009),
        (client_frame(1, b"a", fin=False) + client_frame(1, b"b"), 1002),
    ],
)
def test_protocol_violations(data: bytes, code: int) -> None:
    with pytest.raises(FrameError) as info:
        FrameParser(1024).feed(data)
    assert info.value.code == code


def test_close_payloads() -> None:
    assert parse_close(b"") is None
    assert parse_close(struct.pack("!H", 1000)) == 1000
    for bad in (b"\x03", struct.pack("!H", 999), struct.pack("!H", 1000) + b"\xff"):
        with pytest.raises(FrameError):
            parse_close(bad)


def test_close_frame_reason_is_cut_on_a_character_boundary() -> None:
    frame = framing.close_frame(4001, "é" * 100)
    assert len(frame) <= 2 + 125
    frame[4:].decode()
