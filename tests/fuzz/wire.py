"""Shared pieces of the fuzz suite: client frames built by hand, chunking, retained memory."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ressonance.protocol.framing import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT

CONTROL = (OP_CLOSE, OP_PING, OP_PONG)
DATA = (OP_CONT, OP_TEXT, OP_BINARY)


@dataclass(frozen=True)
class Frame:
    """One client frame as a fuzzer sees it: any opcode, flags, mask and length encoding."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0  # the three RSV bits, 0-7
    masked: bool = True
    length: str = "min"  # "min", or "16"/"64": a longer length field than needed (accepted)
    key: bytes = b"\x00\x00\x00\x00"

    def __repr__(self) -> str:  # a failing example stays readable with a 4 KiB payload
        payload = repr(self.payload[:16]) + ("..." if len(self.payload) > 16 else "")
        flags = [f"fin={self.fin}", f"rsv={self.rsv}", f"masked={self.masked}"]
        return (
            f"Frame(op={self.opcode:#x}, {len(self.payload)} bytes {payload}, {', '.join(flags)}, "
            f"length={self.length!r}, key={self.key!r})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's printer
        printer.text(repr(self))

    def wire(self) -> bytes:
        head = bytearray([(0x80 if self.fin else 0) | (self.rsv << 4) | self.opcode])
        bit = 0x80 if self.masked else 0
        n = len(self.payload)
        form = self.length
        if form == "min":
            form = "7" if n < 126 else "16" if n < 65536 else "64"
        if form == "16" and n >= 65536:
            form = "64"
        if form == "7":
            head.append(bit | n)
        elif form == "16":
            head.append(bit | 126)
            head += n.to_bytes(2, "big")
        else:
            head.append(bit | 127)
            head += n.to_bytes(8, "big")
        if not self.masked:
            return bytes(head) + self.payload
        key = self.key
        return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(self.payload))


def frame_bytes(frames: list[Frame]) -> bytes:
    return b"".join(f.wire() for f in frames)


def chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``data`` cut at the given offsets (any order, duplicates and out-of-range ignored)."""
    last = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        yield data[last:cut]
        last = cut
    yield data[last:]


def cut_points(size: int) -> st.SearchStrategy[list[int]]:
    """Where to split ``size`` bytes into reads: none, a few, or (sometimes) every byte."""
    every = list(range(1, size)) if size <= 300 else []
    return st.one_of(
        st.lists(st.integers(0, max(size, 1)), max_size=12),
        st.just(every),
    )


def retained(obj: object) -> int:
    """Bytes an object keeps in its slots (bytes, strings, memoryviews, containers of them and
    objects holding them), counted with their object overhead; each object counted once."""
    seen: set[int] = {id(obj)}

    def fields(holder: object) -> int:
        names: list[str] = []
        for cls in type(holder).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            names += [slots] if isinstance(slots, str) else list(slots)
        names += list(getattr(holder, "__dict__", {}))
        return sum(size(getattr(holder, name, None)) for name in names)

    def size(value: Any) -> int:
        if value is None or isinstance(value, int | bool | float) or id(value) in seen:
            return 0
        seen.add(id(value))
        if isinstance(value, bytes | bytearray | str):
            return sys.getsizeof(value)
        if isinstance(value, memoryview):
            return sys.getsizeof(value) + size(value.obj)
        if isinstance(value, list | tuple | set | frozenset) or hasattr(value, "popleft"):
            return sys.getsizeof(value) + sum(size(item) for item in value)
        if isinstance(value, dict):
            return sys.getsizeof(value) + sum(size(k) + size(v) for k, v in value.items())
        return sys.getsizeof(value) + fields(value)

    return fields(obj)


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON (a browser's JSON.parse refuses it)")


def strict_json(text: str | bytes) -> Any:
    """Parse as a client would: UTF-8, and no NaN or Infinity (Python's json accepts them)."""
    return json.loads(text, parse_constant=_refuse)


class Recorder:
    """A socket for the node (the ``Socket`` role): checks that every frame is a final text
    frame of strict JSON, keeps them decoded, and checks the close code."""

    def __init__(self, close_codes: set[int]) -> None:
        self.session: Any = None
        self.frames: list[Any] = []
        self.closed: tuple[int, str] | None = None
        self.close_codes = close_codes

    def send(self, frame: bytes) -> None:
        assert frame[0] == 0x81, frame[:2]
        n, at = frame[1] & 0x7F, 2
        if n == 126:
            n, at = int.from_bytes(frame[2:4], "big"), 4
        elif n == 127:
            n, at = int.from_bytes(frame[2:10], "big"), 10
        assert len(frame) == at + n
        self.frames.append(strict_json(frame[at:].decode()))

    def close(self, code: int, reason: str) -> None:
        assert code in self.close_codes, code  # the node closes with Pusher codes only
        self.closed = (code, reason)
