"""RFC 6455: an incremental parser of client frames (masked, possibly fragmented).

The only module that imports ``websockets`` (its C unmasking routine and the accept key).
Server frames are encoded by :mod:`ressonance.protocol.framing`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ressonance.errors import RessonanceError
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


class FrameError(RessonanceError):
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


MAX_FRAGMENTS = 1024
"""Most frames one message may come in: empty continuation frames add nothing to its size, so
``max_size`` alone would let a message in assembly grow forever (docs/security.md)."""


class FrameParser:
    """Feed bytes, get messages. Enforces masking, RSV bits, control-frame rules, fragmentation
    order, ``max_size`` (whole message) and :data:`MAX_FRAGMENTS`; raises :class:`FrameError`
    with the close code.

    Memory and CPU stay linear in what is read: a frame not complete yet waits in one growing
    buffer that is parsed again only once it may hold what was missing, and the fragments of a
    message are appended to one growing buffer (no object per fragment).
    """

    __slots__ = ("_buf", "_frag", "_frag_count", "_frag_op", "_need", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf: bytearray | None = None  # the start of a frame not complete yet
        self._need = 0  # how many bytes _buf must hold before parsing can go on
        self._frag: bytearray | None = None  # the payload of a fragmented message so far
        self._frag_op = 0
        self._frag_count = 0

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf
        if buf is not None:
            buf += data
            if len(buf) < self._need:
                return []
            data = bytes(buf)
            self._buf = None
        out: list[Message] = []
        pos = self._parse(data, out)
        if pos < len(data):
            self._buf = bytearray(memoryview(data)[pos:])
        return out

    def _parse(self, buf: bytes, out: list[Message]) -> int:
        """Append the messages of the complete frames in ``buf`` to ``out``; the position of the
        first byte not parsed (``_need`` says how many bytes from there parsing waits for)."""
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
            if n >= 126:
                head = 4 if n == 126 else 10
                if end - pos < head:
                    self._need = head
                    return pos
                n = int.from_bytes(buf[pos + 2 : pos + head], "big")
            self._check_header(opcode, fin, n)
            total = head + 4 + n
            if end - pos < total:
                self._need = total
                return pos
            mask = buf[pos + head : pos + head + 4]
            payload = apply_mask(buf[pos + head + 4 : pos + total], mask) if n else b""
            pos += total
            message = self._assemble(opcode, bool(fin), payload)
            if message is not None:
                out.append(message)
        self._need = 2
        return pos

    def _check_header(self, opcode: int, fin: int, n: int) -> None:
        """The frame's rules, from its header alone: before its payload is buffered."""
        frag = self._frag
        if opcode in _CONTROL:
            if not fin or n > 125:
                raise FrameError(codes.WS_PROTOCOL_ERROR, "Invalid control frame")
        elif opcode not in _DATA:
            raise FrameError(codes.WS_PROTOCOL_ERROR, "Unknown opcode")
        elif frag is None:
            if opcode == OP_CONT:
                raise FrameError(codes.WS_PROTOCOL_ERROR, "Unexpected continuation frame")
            if n > self.max_size:
                raise FrameError(codes.WS_MESSAGE_TOO_BIG, "Message too big")
        elif opcode != OP_CONT:
            raise FrameError(codes.WS_PROTOCOL_ERROR, "Expected a continuation frame")
        elif n + len(frag) > self.max_size:
            raise FrameError(codes.WS_MESSAGE_TOO_BIG, "Message too big")
        elif self._frag_count >= MAX_FRAGMENTS:
            raise FrameError(codes.WS_MESSAGE_TOO_BIG, "Message in too many fragments")

    def _assemble(self, opcode: int, fin: bool, payload: bytes) -> Message | None:
        """The message ``payload`` completes, if any (the order was checked by the header)."""
        frag = self._frag
        if opcode in _CONTROL or (fin and frag is None):
            return Message(opcode, payload)
        if frag is None:
            self._frag, self._frag_op, self._frag_count = bytearray(payload), opcode, 1
            return None
        frag += payload
        self._frag_count += 1
        if not fin:
            return None
        self._frag = None
        return Message(self._frag_op, bytes(frag))
