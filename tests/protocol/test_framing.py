"""Server frame encoding and the client frame parser (RFC 6455 §5)."""

from __future__ import annotations

import os
import struct

import pytest

from ressonance.protocol import framing
from ressonance.transport.frames import FrameError, FrameParser, parse_close


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
