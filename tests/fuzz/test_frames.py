"""FrameParser (transport/frames.py) against arbitrary bytes and odd but well-formed frame
sequences, cut into reads at random points.

- Nothing but :class:`FrameError` escapes, and only with the codes the parser documents (1002 a
  broken rule, 1009 a message over ``max_size`` or in more than ``MAX_FRAGMENTS`` frames).
- For a sequence built frame by frame, a model of RFC 6455's rules says which messages come out
  and, at the first bad frame, which close codes fit; the parser must agree however the bytes
  are cut.
- After every ``feed`` the parser keeps at most ``max_size`` (plus what a bytearray
  over-allocates) plus a small constant, whatever the framing: fragments, tiny or empty
  continuation frames, a frame arriving a byte at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ressonance.protocol.framing import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT
from ressonance.transport import frames
from ressonance.transport.frames import FrameError, FrameParser, Message, parse_close
from tests.fuzz.wire import CONTROL, DATA, Frame, chunks, cut_points, frame_bytes, retained

pytestmark = pytest.mark.fuzz

MAX_FRAGMENTS = frames.MAX_FRAGMENTS
PARSER_CODES = {1002, 1009}
SLACK = 512  # a header, the object overhead of two buffers, a partial control frame


def bound(max_size: int) -> int:
    """What a parser may keep: the message limit, a bytearray's growth (up to 1/8), slack."""
    return max_size + max_size // 8 + SLACK


# the edges, anything, and limits large enough that a doubled buffer shows over the slack
max_sizes = st.sampled_from([0, 1, 125, 126]) | st.integers(0, 4096) | st.integers(1024, 4096)


@dataclass
class Outcome:
    """What the model expects: the messages, and at the first bad frame the codes that fit."""

    messages: list[Message] = field(default_factory=list)
    codes: set[int] = field(default_factory=set)


def model(seq: list[Frame], max_size: int) -> Outcome:
    """RFC 6455 §5 as the parser enforces it. A frame breaking several rules may be closed
    with the code of any of them (the order of the checks is the parser's business)."""
    out = Outcome()
    frag: bytearray | None = None
    frag_op = 0
    count = 0
    for f in seq:
        n = len(f.payload)
        bad: set[int] = set()
        if f.rsv or not f.masked:
            bad.add(1002)
        if f.opcode in CONTROL:
            if not f.fin or n > 125:
                bad.add(1002)
        elif f.opcode not in DATA:
            bad.add(1002)
        else:
            if n > max_size or (frag is not None and n + len(frag) > max_size):
                bad.add(1009)
            if f.opcode == OP_CONT and frag is not None and count >= MAX_FRAGMENTS:
                bad.add(1009)
            if (f.opcode == OP_CONT) != (frag is not None):
                bad.add(1002)  # a continuation out of a message, or a new message inside one
        if bad:
            out.codes = bad
            return out
        if f.opcode in CONTROL:
            out.messages.append(Message(f.opcode, f.payload))
        elif f.opcode == OP_CONT:
            assert frag is not None
            frag += f.payload
            count += 1
            if f.fin:
                out.messages.append(Message(frag_op, bytes(frag)))
                frag = None
        elif f.fin:
            out.messages.append(Message(f.opcode, f.payload))
        else:
            frag, frag_op, count = bytearray(f.payload), f.opcode, 1
    return out


def run(parser: FrameParser, data: bytes, cuts: list[int]) -> tuple[list[Message], int | None]:
    """Feed ``data`` in reads; the messages and the close code (None: no error). Checks the
    memory bound after every read."""
    got: list[Message] = []
    for chunk in chunks(data, cuts):
        try:
            got += parser.feed(chunk)
        except FrameError as exc:
            assert exc.code in PARSER_CODES, exc.code
            return got, exc.code
        kept = retained(parser)
        assert kept <= bound(parser.max_size), (kept, parser.max_size)
    return got, None


@st.composite
def payloads(draw: st.DrawFn, size: int) -> bytes:
    seed = draw(st.binary(min_size=1, max_size=8))
    return (seed * (size // len(seed) + 1))[:size]


@st.composite
def odd_frame(draw: st.DrawFn, max_size: int, clean: bool) -> Frame:
    """Any opcode, fin and size near the limits; ``clean``: masked, RSV bits 0."""
    opcode = draw(st.one_of(st.sampled_from([*DATA, *CONTROL]), st.integers(0, 15)))
    size = draw(st.sampled_from([0, 1, 125, 126, max_size, max_size + 1]) | st.integers(0, 300))
    return Frame(
        opcode,
        draw(payloads(size)),
        fin=draw(st.booleans()),
        rsv=0 if clean else draw(st.sampled_from([0, 0, 0, 1, 2, 4, 7])),
        masked=clean or draw(st.sampled_from([True, True, True, False])),
        length=draw(st.sampled_from(["min", "min", "16", "64"])),
        key=draw(st.binary(min_size=4, max_size=4)),
    )


@st.composite
def message_frames(draw: st.DrawFn, max_size: int, clean: bool) -> list[Frame]:
    """One data message, whole or in fragments, with control frames between the fragments."""
    opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
    total = draw(st.integers(0, max_size + 2) | st.sampled_from([max_size, max_size + 1]))
    body = draw(payloads(total))
    pieces = draw(st.integers(1, 6))
    if draw(st.booleans()):  # even pieces: the first ones are large too
        cuts = [total * i // pieces for i in range(1, pieces)]
    else:
        points = st.lists(st.integers(0, total), min_size=pieces - 1, max_size=pieces - 1)
        cuts = sorted(draw(points))
    parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    out: list[Frame] = []
    for i, part in enumerate(parts):
        key = draw(st.binary(min_size=4, max_size=4))
        last = i == len(parts) - 1
        out.append(Frame(OP_CONT if i else opcode, part, fin=last, key=key))
        between = draw(st.sampled_from(["", "", "control", "control", "odd", "new"]))
        if not last and between == "control":
            op = draw(st.sampled_from(CONTROL))
            out.append(Frame(op, draw(payloads(draw(st.integers(0, 125)))), key=key))
        elif not last and between == "odd":
            out.append(draw(odd_frame(max_size, clean)))
        elif not last and between == "new":  # a new message inside this one (1002)
            size = draw(st.integers(0, max_size) | st.just(max_size))
            op = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
            out.append(Frame(op, draw(payloads(size)), fin=draw(st.booleans()), key=key))
    return out


@st.composite
def sequences(draw: st.DrawFn) -> tuple[int, list[Frame]]:
    max_size = draw(max_sizes)
    clean = draw(st.booleans())  # no RSV bits, no unmasked frame: the errors come later
    seq: list[Frame] = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 4)) == 0:
            seq.append(draw(odd_frame(max_size, clean)))
        else:
            seq += draw(message_frames(max_size, clean))
    return max_size, seq


Case = tuple[int, list[Frame], list[int]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A limit, a frame sequence and where its bytes are cut into reads."""
    max_size, seq = draw(sequences())
    cuts = draw(cut_points(len(frame_bytes(seq))))
    start = 0
    for f in seq:  # and reads that end inside frames, where a parser holds a partial frame
        size = len(f.wire())
        if draw(st.booleans()):
            cuts.append(start + draw(st.sampled_from([1, 2, 9, size // 2, size - 1])))
        start += size
    return max_size, seq, cuts


BIG = 4096
# a new message inside a fragmented one, its frame not complete yet: the parser must not hold
# both (the fragments so far and the new frame's payload), that is twice the limit
INTERRUPTED = [Frame(OP_TEXT, b"a" * BIG, fin=False), Frame(OP_TEXT, b"b" * BIG)]


@given(cases())
@example((BIG, INTERRUPTED, [len(frame_bytes(INTERRUPTED)) - 10]))
def test_frame_sequences_match_the_model(case: Case) -> None:
    max_size, seq, cuts = case
    wire = frame_bytes(seq)
    expected = model(seq, max_size)
    got, code = run(FrameParser(max_size), wire, cuts)
    if expected.codes:
        assert code in expected.codes, (code, expected.codes)
        assert got == expected.messages[: len(got)]
    else:
        assert code is None
        assert got == expected.messages


@given(st.data(), max_sizes, st.binary(max_size=2048))
@example(None, 0, b"\x81\xff" + b"\xff" * 8)  # a 64-bit length far over any limit
@example(None, 10, b"\x01\x80\x00\x00\x00\x00" * 50)  # fifty empty first fragments
def test_arbitrary_bytes_end_in_a_documented_code(
    data: st.DataObject | None, max_size: int, wire: bytes
) -> None:
    cuts = data.draw(cut_points(len(wire))) if data is not None else []
    run(FrameParser(max_size), wire, cuts)  # the codes and the memory bound are checked there


@given(st.data(), sequences(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255))))
def test_mutated_sequences_end_in_a_documented_code(
    data: st.DataObject, case: tuple[int, list[Frame]], flips: list[tuple[int, int]]
) -> None:
    max_size, seq = case
    wire = bytearray(frame_bytes(seq))
    for at, value in flips:
        if wire:
            wire[at % len(wire)] = value
    run(FrameParser(max_size), bytes(wire), data.draw(cut_points(len(wire))))


@given(
    st.data(),
    st.integers(16, 4096),
    st.lists(st.integers(0, 3), min_size=0, max_size=3000),
    st.booleans(),
)
@example(None, 1024, [0] * 2000, False)  # endless empty continuation frames
@example(None, 4096, [1] * 1500, True)  # tiny fragments, then the end of the message
def test_many_fragments_cost_at_most_the_message_limit(
    data: st.DataObject | None, max_size: int, sizes: list[int], finish: bool
) -> None:
    """However a message is cut into frames, memory stays bounded and the message either comes
    out whole or is closed with 1009."""
    seq = [Frame(OP_TEXT, b"{", fin=False)]
    seq += [Frame(OP_CONT, b"x" * n, fin=False, key=b"\x01\x02\x03\x04") for n in sizes]
    if finish:
        seq.append(Frame(OP_CONT, b"}"))
    wire = frame_bytes(seq)
    cuts = data.draw(cut_points(len(wire))) if data is not None else [len(wire) // 2]
    got, code = run(FrameParser(max_size), wire, cuts)
    expected = model(seq, max_size)
    if expected.codes:
        assert code == 1009 and expected.codes == {1009}, (code, expected.codes)
    else:
        assert code is None and got == expected.messages


@given(max_sizes, st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.booleans())
def test_a_new_message_inside_a_fragmented_one(
    max_size: int, first: float, second: float, cut: float, fin: bool
) -> None:
    """1002 (or 1009 when both together are over the limit), and never the first message's
    fragments and the second's payload held at once (twice the limit): the order is wrong from
    the second frame's header on."""
    seq = [
        Frame(OP_TEXT, b"a" * int(first * max_size), fin=False),
        Frame(OP_BINARY, b"b" * int(second * max_size), fin=fin),
    ]
    wire = frame_bytes(seq)
    at = len(seq[0].wire()) + int(cut * len(seq[1].wire()))
    got, code = run(FrameParser(max_size), wire, [at])
    assert got == [] and code in model(seq, max_size).codes, (got, code)


@given(max_sizes, st.integers(0, 2**64 - 1), st.sampled_from([OP_TEXT, OP_BINARY, OP_CONT]))
def test_a_length_over_the_limit_is_refused_from_the_header(
    max_size: int, length: int, opcode: int
) -> None:
    """1009 (or 1002 for a stray continuation) as soon as the header is read: the payload is
    never waited for, so a huge declared length costs nothing."""
    if length <= max_size:
        length = max_size + 1
    head = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big") + b"\x00" * 4
    parser = FrameParser(max_size)
    with pytest.raises(FrameError) as info:
        for byte in head:
            parser.feed(bytes([byte]))
    assert info.value.code in ({1009, 1002} if opcode == OP_CONT else {1009})


@given(st.binary(max_size=125))
@example(b"\x03\xe8\xff")  # 1000 and a reason that is not UTF-8
@example(b"\x0f\xa0")  # 4000
def test_close_payloads(payload: bytes) -> None:
    """``parse_close``: None, a valid code, 1002 for a malformed one or 1007 for a bad reason."""
    try:
        code = parse_close(payload)
    except FrameError as exc:
        valid_code = len(payload) >= 2 and _valid_close_code(int.from_bytes(payload[:2], "big"))
        assert exc.code == (1007 if valid_code else 1002), (exc.code, payload)
        if exc.code == 1007:
            with pytest.raises(UnicodeDecodeError):
                payload[2:].decode()
        return
    if not payload:
        assert code is None
        return
    assert code == int.from_bytes(payload[:2], "big") and _valid_close_code(code)
    payload[2:].decode()


def _valid_close_code(code: int) -> bool:
    """RFC 6455 §7.4: the codes a peer may send (1004-1006 and 1015 never on the wire)."""
    return code in {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014} or (
        3000 <= code < 5000
    )


def test_the_model_itself() -> None:
    """The model can fail: it refuses what the RFC refuses."""
    ok = [Frame(OP_TEXT, b"a", fin=False), Frame(OP_PING, b""), Frame(OP_CONT, b"b")]
    assert model(ok, 10).messages == [Message(OP_PING, b""), Message(OP_TEXT, b"ab")]
    assert model([Frame(OP_CONT, b"")], 10).codes == {1002}
    assert model([Frame(OP_TEXT, b"a" * 11)], 10).codes == {1009}
    assert model([Frame(OP_TEXT, b"", masked=False)], 10).codes == {1002}
    assert model([Frame(OP_PONG, b"", fin=False)], 10).codes == {1002}
    assert model([Frame(OP_CLOSE, b"x" * 126)], 200).codes == {1002}
    assert model([Frame(3, b"")], 10).codes == {1002}
    many = [Frame(OP_TEXT, b"", fin=False)] + [Frame(OP_CONT, b"", fin=False)] * MAX_FRAGMENTS
    assert model(many, 10).codes == {1009}
