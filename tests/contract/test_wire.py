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
    encode_probe,
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


def test_a_full_outbox_says_so_and_logs_its_drops_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Drops are never silent, nor one log line each: a warning at the first, then at most
    every REPORT_EVERY seconds with the count since; a link coming back reports the rest."""
    broker = WireBroker("redis://user:pw@127.0.0.1:1/0", "a", capacity=3)
    for n in range(3):
        assert not broker.full
        broker.send(str(n))
    assert broker.full
    for n in range(3, 10):
        broker.send(str(n))
    assert broker.dropped == 7 and broker.outbox.frames[0] == encode_control("a", "7")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "1 frame(s)" in warnings[0] and "pw" not in warnings[0]
    broker.link_changed(True)  # back: what was not logged yet is
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "6 frame(s)" in warnings[1] and "(7 in all)" in warnings[1]
    assert "outbox is full" in warnings[1]


def test_a_probe_comes_back_to_its_sender_and_reaches_no_one_else() -> None:
    class Handler:
        def __init__(self) -> None:
            self.got: list[object] = []

        def deliver(self, *args: object) -> None:
            self.got.append(args)

        def control(self, *args: object) -> None:
            self.got.append(args)

        def link_changed(self, up: bool) -> None:
            pass

    a, b = WireBroker("redis://h:1/0", "a", 10), WireBroker("redis://h:1/0", "b", 10)
    a.handler, b.handler = Handler(), Handler()
    a.wrote()
    probe = encode_probe("a")
    a.received(probe)
    b.received(probe)
    assert a.handler.got == b.handler.got == []
    assert a._unechoed_since is None  # seen back: the link works


def test_a_handler_failing_on_every_frame_cannot_flood_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a frame that breaks the handler may arrive once per publish: tracebacks are budgeted
    class Failing:
        def deliver(self, *args: object) -> None:
            raise RuntimeError("bug")

        def control(self, *args: object) -> None:
            raise RuntimeError("bug")

        def link_changed(self, up: bool) -> None:
            pass

    broker = WireBroker("redis://h:1/0", "a", 10)
    broker.handler = Failing()
    frame = encode_control("b", "{}")
    for _ in range(200):
        broker.received(frame)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert 1 <= len(tracebacks) <= 10
