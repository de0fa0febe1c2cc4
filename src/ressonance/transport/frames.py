"""RFC 6455: an incremental parser of client frames (masked, possibly fragmented).

The only module that imports ``websockets`` (its C unmasking routine and the accept key).
Server frames are encoded by :mod:`ressonance.protocol.framing`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ressonance.protocol import codes
from ressonance.protocol.framing import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_frame,
    encode,
    text_frame,
)

try:  # the C routine; websockets ships a pure-Python fallback where it is not built
    from websockets.speedups import apply_mask  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

from websockets.utils import accept_key

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameError",
    "FrameParser",
    "Message",
    "accept_key",
    "close_frame",
    "encode",
    "parse_close",
    "text_frame",
]

_CONTROL = (OP_CLOSE, OP_PING, OP_PONG)
_DATA = (OP_CONT, OP_TEXT, OP_BINARY)


class FrameError(Exception):
    """The peer broke RFC 6455; close the connection with ``code`` (RFC 6455 §7.4.1)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    """A complete message (data frames reassembled) or a control frame."""

    opcode: int
    payload: bytes


def parse_close(payload: bytes) -> int | None:
    """The code of a client's close frame; raises :class:`FrameError` for a malformed one."""
    if not payload:
        return None
    if len(payload) == 1:
        raise FrameError(codes.WS_PROTOCOL_ERROR, "Malformed close frame")
    code = int.from_bytes(payload[:2], "big")
    if not (
        code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
        or 3000 <= code < 5000
    ):
        raise FrameError(codes.WS_PROTOCOL_ERROR, "Invalid close code")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(codes.WS_INVALID_PAYLOAD, "Invalid UTF-8 in close reason") from None
    return code


class FrameParser:
    """Feed bytes, get messages. Enforces masking, RSV bits, control-frame rules, fragmentation
    order and ``max_size`` (whole message); raises :class:`FrameError` with the close code."""

    __slots__ = ("_buf", "_frag_op", "_frag_size", "_frags", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = b""
        self._frag_op: int | None = None
        self._frags: list[bytes] | None = None
        self._frag_size = 0

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf + data if self._buf else data
        out: list[Message] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                raise FrameError(codes.WS_PROTOCOL_ERROR, "Reserved bits must be 0")
            if not b1 & 0x80:
                raise FrameError(codes.WS_PROTOCOL_ERROR, "Client frames must be masked")
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            self._check_header(opcode, fin, n)
            total = head + 4 + n
            if end - pos < total:
                break
            mask = buf[pos + head : pos + head + 4]
            payload = apply_mask(buf[pos + head + 4 : pos + total], mask) if n else b""
            pos += total
            message = self._assemble(opcode, bool(fin), payload)
            if message is not None:
                out.append(message)
        self._buf = buf[pos:] if pos < end else b""
        return out

    def _check_header(self, opcode: int, fin: int, n: int) -> None:
        if opcode in _CONTROL:
            if not fin or n > 125:
                raise FrameError(codes.WS_PROTOCOL_ERROR, "Invalid control frame")
        elif opcode not in _DATA:
            raise FrameError(codes.WS_PROTOCOL_ERROR, "Unknown opcode")
        elif n + self._frag_size > self.max_size:
            raise FrameError(codes.WS_MESSAGE_TOO_BIG, "Message too big")

    def _assemble(self, opcode: int, fin: bool, payload: bytes) -> Message | None:
        if opcode in _CONTROL:
            return Message(opcode, payload)
        if opcode == OP_CONT:
            if self._frags is None:
                raise FrameError(codes.WS_PROTOCOL_ERROR, "Unexpected continuation frame")
            self._frags.append(payload)
            self._frag_size += len(payload)
            if not fin:
                return None
            assert self._frag_op is not None
            message = Message(self._frag_op, b"".join(self._frags))
            self._frags, self._frag_op, self._frag_size = None, None, 0
            return message
        if self._frags is not None:
            raise FrameError(codes.WS_PROTOCOL_ERROR, "Expected a continuation frame")
        if fin:
            return Message(opcode, payload)
        self._frags, self._frag_op, self._frag_size = [payload], opcode, len(payload)
        return None
