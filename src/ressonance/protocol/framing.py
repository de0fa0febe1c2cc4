"""Server-side WebSocket frames (RFC 6455 §5.2): unmasked, final, never compressed.

A broadcast frame is encoded once and the same bytes go to every subscriber; that is valid
only because permessage-deflate is never negotiated (docs/design.md "Hot-path rules").
"""

from __future__ import annotations

import struct

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_pack_h = struct.Struct("!BB").pack
_pack_h16 = struct.Struct("!BBH").pack
_pack_h64 = struct.Struct("!BBQ").pack


def encode(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        return _pack_h(0x80 | opcode, n) + payload
    if n < 65536:
        return _pack_h16(0x80 | opcode, 126, n) + payload
    return _pack_h64(0x80 | opcode, 127, n) + payload


def text_frame(text: str) -> bytes:
    """A text frame carrying ``text`` (a Pusher JSON message)."""
    return encode(OP_TEXT, text.encode())


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125-byte control-frame limit."""
    raw = reason.encode()[:123]
    while raw:
        try:
            raw.decode()
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    return encode(OP_CLOSE, struct.pack("!H", code) + raw)
