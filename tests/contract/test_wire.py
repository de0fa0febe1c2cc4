"""The networked brokers' wire format: fragments of frames too large for one engine message."""

from __future__ import annotations

import pytest

from ressonance.scaling.wire import (
    FRAGMENT_CHARS,
    MAX_FRAGMENTS,
    Outbox,
    Reassembler,
    WireBroker,
    encode_control,
    fragment,
)


def test_a_long_frame_comes_back_whole_from_its_fragments() -> None:
    frame = encode_control("a", "é" * 25 + "x" * 2_500)
    pieces = fragment("a", 7, frame, size=1000)
    assert len(pieces) == 3
    assert all(len(p.encode()) < 1100 for p in pieces)
    joiner = Reassembler()
    assert [joiner.add(p) for p in pieces] == [None, None, frame]


def test_origins_are_joined_apart_even_when_interleaved() -> None:
    a, b = encode_control("a", "A" * 30), encode_control("b", "B" * 30)
    pa, pb = fragment("a", 1, a, size=10), fragment("b", 1, b, size=10)
    joiner = Reassembler()
    out = [joiner.add(p) for pair in zip(pa, pb, strict=True) for p in pair]
    assert [o for o in out if o is not None] == [a, b]


def test_a_lost_piece_drops_that_frame_and_the_next_one_still_arrives() -> None:
    first, second = encode_control("a", "1" * 30), encode_control("a", "2" * 30)
    p1, p2 = fragment("a", 1, first, size=10), fragment("a", 2, second, size=10)
    joiner = Reassembler()
    assert [joiner.add(p) for p in (p1[0], p1[2])] == [None, None]  # p1[1] lost
    assert [joiner.add(p) for p in p2] == [None, None, None, second]


def test_a_frame_cut_off_by_a_new_one_is_dropped() -> None:
    first, second = encode_control("a", "1" * 30), encode_control("a", "2" * 15)
    joiner = Reassembler()
    joiner.add(fragment("a", 1, first, size=10)[0])
    assert [joiner.add(p) for p in fragment("a", 2, second, size=10)] == [None, second]


def test_absurd_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        Reassembler().add(f"Fa\x1f1\x1f0\x1f{MAX_FRAGMENTS + 1}\x1fx")


def test_the_default_piece_fits_nats_default_max_payload() -> None:
    worst = "🎉" * FRAGMENT_CHARS  # 4 bytes each in UTF-8
    (piece,) = fragment("node-with-a-long-id", 1, worst)
    assert len(piece.encode()) < 1024 * 1024


def test_a_frame_without_a_utf8_form_is_dropped_and_counted_not_queued() -> None:
    broker = WireBroker("redis://127.0.0.1:1/0", "a", capacity=10)
    broker.publish("1", "c", '{"data":"\ud800"}', None)  # a lone surrogate
    broker.send("ok ü")
    assert broker.dropped == 1
    assert list(broker.outbox.frames) == [encode_control("a", "ok ü")]


def test_a_whole_frame_from_the_same_origin_ends_a_partial_one() -> None:
    """A node's fragments go out back to back: a whole frame after a partial one means the
    rest was lost, and the partial one is not kept (nor completed by stray pieces)."""
    big = encode_control("a", "x" * 30)
    pieces = fragment("a", 1, big, size=10)
    joiner = Reassembler()
    joiner.add(pieces[0])
    joiner.interrupted(encode_control("b", "other node"))  # another origin: no effect
    joiner.interrupted(encode_control("a", "next"))
    assert [joiner.add(p) for p in pieces[1:]] == [None] * (len(pieces) - 1)


def test_the_outbox_is_bounded_in_characters_too() -> None:
    outbox = Outbox(capacity=100, max_chars=25)
    for n in range(5):
        outbox.put(str(n) * 10)
    assert list(outbox.frames) == ["3" * 10, "4" * 10]
    assert (outbox.chars, outbox.dropped) == (20, 3)
    outbox.put("x" * 40)  # larger than the bound alone: kept, the others go
    assert list(outbox.frames) == ["x" * 40] and outbox.chars == 40
    assert outbox.take(10) == ["x" * 40] and outbox.chars == 0
