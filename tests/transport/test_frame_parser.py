"""The client frame parser (transport/frames.py, RFC 6455 §5): masking, fragmentation,
control frames, size and fragment limits, close payloads, and bytes in any pieces."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from ressonance.protocol.framing import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT
from ressonance.transport.frames import (
    MAX_FRAGMENTS,
    FrameError,
    FrameParser,
    Message,
    parse_close,
)
from tests.support.wsclient import encode_frame as frame


def with_rsv(data: bytes, bits: int) -> bytes:
    return bytes([data[0] | bits]) + data[1:]


def feed_bytewise(parser: FrameParser, data: bytes, step: int = 1) -> list[Message]:
    out: list[Message] = []
    for i in range(0, len(data), step):
        out.extend(parser.feed(data[i : i + step]))
    return out


def refusal(data: bytes, max_size: int = 1024) -> tuple[int, str]:
    with pytest.raises(FrameError) as info:
        FrameParser(max_size).feed(data)
    return info.value.code, info.value.reason


# masking -----------------------------------------------------------------------------------
def test_a_masked_frame_is_unmasked() -> None:
    assert FrameParser(1024).feed(frame(OP_TEXT, b'{"event":"x"}')) == [
        Message(OP_TEXT, b'{"event":"x"}')
    ]


def test_an_empty_masked_frame_is_an_empty_message() -> None:
    assert FrameParser(1024).feed(frame(OP_TEXT, b"")) == [Message(OP_TEXT, b"")]


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_an_unmasked_client_frame_is_1002(opcode: int) -> None:
    assert refusal(frame(opcode, b"x", mask=False)) == (1002, "Client frames must be masked")


@pytest.mark.parametrize("bits", [0x40, 0x20, 0x10])
def test_a_reserved_bit_is_1002(bits: int) -> None:
    assert refusal(with_rsv(frame(OP_TEXT, b"x"), bits)) == (1002, "Reserved bits must be 0")


# fragmentation -----------------------------------------------------------------------------
def test_a_fragmented_message_has_the_first_frames_opcode() -> None:
    data = (
        frame(OP_BINARY, b"\x00\x01", fin=False)
        + frame(OP_CONT, b"\x02", fin=False)
        + frame(OP_CONT, b"\x03")
    )
    assert FrameParser(1024).feed(data) == [Message(OP_BINARY, b"\x00\x01\x02\x03")]


def test_fragments_fed_in_separate_reads_make_one_message() -> None:
    parser = FrameParser(1024)
    assert parser.feed(frame(OP_TEXT, b"hel", fin=False)) == []
    assert parser.feed(frame(OP_CONT, b"l", fin=False)) == []
    assert parser.feed(frame(OP_CONT, b"o")) == [Message(OP_TEXT, b"hello")]
    # the next message starts afresh
    assert parser.feed(frame(OP_TEXT, b"again")) == [Message(OP_TEXT, b"again")]


def test_a_continuation_without_a_first_frame_is_1002() -> None:
    assert refusal(frame(OP_CONT, b"x")) == (1002, "Unexpected continuation frame")


def test_a_new_data_frame_inside_a_fragmented_message_is_1002() -> None:
    data = frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b")
    assert refusal(data) == (1002, "Expected a continuation frame")


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_a_control_frame_between_fragments_comes_out_first(opcode: int) -> None:
    payload = struct.pack("!H", 1000) if opcode == OP_CLOSE else b"p"
    data = frame(OP_TEXT, b"a", fin=False) + frame(opcode, payload) + frame(OP_CONT, b"b")
    assert FrameParser(1024).feed(data) == [Message(opcode, payload), Message(OP_TEXT, b"ab")]


def test_parse_in_pieces_and_fragments() -> None:
    data = frame(OP_TEXT, b"hel", fin=False) + frame(OP_CONT, b"lo") + frame(OP_PING, b"p")
    assert feed_bytewise(FrameParser(1024), data) == [
        Message(OP_TEXT, b"hello"),
        Message(OP_PING, b"p"),
    ]


# control frames ----------------------------------------------------------------------------
def test_a_fragmented_control_frame_is_1002() -> None:
    assert refusal(frame(OP_PING, b"x", fin=False)) == (1002, "Invalid control frame")


def test_a_control_frame_of_125_bytes_is_taken_and_of_126_is_1002() -> None:
    assert FrameParser(1024).feed(frame(OP_PING, b"x" * 125)) == [Message(OP_PING, b"x" * 125)]
    assert refusal(frame(OP_PING, b"x" * 126)) == (1002, "Invalid control frame")


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_a_reserved_opcode_is_1002(opcode: int) -> None:
    assert refusal(frame(opcode, b"x")) == (1002, "Unknown opcode")


# sizes -------------------------------------------------------------------------------------
def test_a_message_of_max_size_is_taken_and_one_byte_more_is_1009() -> None:
    assert FrameParser(100).feed(frame(OP_TEXT, b"x" * 100)) == [Message(OP_TEXT, b"x" * 100)]
    assert refusal(frame(OP_TEXT, b"x" * 101), max_size=100) == (1009, "Message too big")


def test_fragments_over_max_size_together_are_1009() -> None:
    data = frame(OP_TEXT, b"x" * 60, fin=False) + frame(OP_CONT, b"x" * 41)
    assert refusal(data, max_size=100) == (1009, "Message too big")
    ok = frame(OP_TEXT, b"x" * 60, fin=False) + frame(OP_CONT, b"x" * 40)
    assert FrameParser(100).feed(ok) == [Message(OP_TEXT, b"x" * 100)]


def test_a_too_big_frame_is_refused_from_its_header_alone() -> None:
    """A 64-bit length of 1 TiB: refused before any payload arrives (none is buffered)."""
    head = bytes([0x80 | OP_TEXT, 0x80 | 127]) + struct.pack("!Q", 1 << 40)
    assert refusal(head) == (1009, "Message too big")


def test_a_message_may_come_in_max_fragments() -> None:
    middle = frame(OP_CONT, b"", fin=False) * (MAX_FRAGMENTS - 2)
    data = frame(OP_TEXT, b"a", fin=False) + middle + frame(OP_CONT, b"b")
    assert FrameParser(1024).feed(data) == [Message(OP_TEXT, b"ab")]


def test_one_fragment_more_than_max_fragments_is_1009() -> None:
    middle = frame(OP_CONT, b"", fin=False) * (MAX_FRAGMENTS - 1)
    data = frame(OP_TEXT, b"a", fin=False) + middle + frame(OP_CONT, b"b")
    assert refusal(data) == (1009, "Message in too many fragments")


def test_empty_continuation_frames_cannot_go_on_forever() -> None:
    parser = FrameParser(1024)
    parser.feed(frame(OP_TEXT, b"a", fin=False))
    empty = frame(OP_CONT, b"", fin=False)
    with pytest.raises(FrameError) as info:
        for _ in range(MAX_FRAGMENTS):
            parser.feed(empty)
    assert info.value.code == 1009


def test_fragments_cost_their_payload_not_an_object_each() -> None:
    """1,000 fragments of 2 bytes hold about 2,000 bytes (a list of bytes objects held ~48 KB)."""
    parser = FrameParser(1 << 20)
    parser.feed(frame(OP_TEXT, b"{", fin=False))
    data = b"".join(frame(OP_CONT, b"xx", fin=False) for _ in range(1000))
    tracemalloc.start()
    try:
        assert parser.feed(data) == []
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 8 * 1024, held


# bytes in any pieces -----------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_frames_read_a_byte_at_a_time(size: int) -> None:
    """Every length form (7-bit, 16-bit, 64-bit) split at every byte, and in uneven pieces."""
    data = frame(OP_TEXT, b"x" * size) + frame(OP_PING, b"p") + frame(OP_TEXT, b"y" * size)
    expected = [
        Message(OP_TEXT, b"x" * size),
        Message(OP_PING, b"p"),
        Message(OP_TEXT, b"y" * size),
    ]
    for step in (1, 7, 4099):
        assert feed_bytewise(FrameParser(1 << 20), data, step) == expected


def test_an_error_is_raised_by_the_byte_that_completes_the_header() -> None:
    parser = FrameParser(1024)
    data = frame(OP_TEXT, b"x", mask=False)
    assert parser.feed(data[:1]) == []
    with pytest.raises(FrameError) as info:
        parser.feed(data[1:2])
    assert info.value.code == 1002


# close payloads ----------------------------------------------------------------------------
def close(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def test_an_empty_close_has_no_code() -> None:
    assert parse_close(b"") is None


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1014])
def test_defined_close_codes_are_taken(code: int) -> None:
    assert parse_close(close(code)) == code


@pytest.mark.parametrize("code", [3000, 4000, 4999])
def test_application_close_codes_are_taken(code: int) -> None:
    assert parse_close(close(code, "bye é".encode())) == code


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_reserved_or_unknown_close_codes_are_1002(code: int) -> None:
    with pytest.raises(FrameError) as info:
        parse_close(close(code))
    assert (info.value.code, info.value.reason) == (1002, "Invalid close code")


def test_a_one_byte_close_payload_is_1002() -> None:
    with pytest.raises(FrameError) as info:
        parse_close(b"\x03")
    assert (info.value.code, info.value.reason) == (1002, "Malformed close frame")


@pytest.mark.parametrize("reason", [b"\xff", b"\xc3", b"ok\xed\xa0\x80"])
def test_a_close_reason_not_utf8_is_1007(reason: bytes) -> None:
    with pytest.raises(FrameError) as info:
        parse_close(close(1000, reason))
    assert (info.value.code, info.value.reason) == (1007, "Invalid UTF-8 in close reason")
