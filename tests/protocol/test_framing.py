"""Server frame encoding (RFC 6455 §5). The client frame parser is tested in
tests/transport/test_frame_parser.py."""

from __future__ import annotations

import pytest

from ressonance.protocol import framing


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_encode_lengths(size: int) -> None:
    frame = framing.encode(framing.OP_TEXT, b"x" * size)
    assert frame[0] == 0x81
    assert frame.endswith(b"x" * size)


def test_close_frame_reason_is_cut_on_a_character_boundary() -> None:
    frame = framing.close_frame(4001, "é" * 100)
    assert len(frame) <= 2 + 125
    frame[4:].decode()
