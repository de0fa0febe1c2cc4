"""End to end: the real server (tests/support/server.py) fed random frames over real sockets.

Each example opens a WebSocket, sends a few frames (client messages of odd JSON, frames that
break RFC 6455, fragments, pings, closes), then a ping as a barrier, and reads until its pong or
the server's close. The server must close only with a documented code (never 1011, an internal
error), stay healthy and log no traceback. Bounded: a few dozen connections in the ci profile,
every read with a time-out.
"""

from __future__ import annotations

import contextlib
import socket
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz.test_frames import message_frames, odd_frame
from tests.fuzz.test_messages import DEEP_CHANNEL_DATA, DEEP_DATA, HUGE, client_frame
from tests.fuzz.wire import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Frame, frame_bytes
from tests.support.server import RunningServer
from tests.support.wsclient import health_status, upgrade_request

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(240)]

MAX_MESSAGE = 100 * 1024  # the server's default max_message_kb
CLOSE_CODES = {1000, 1002, 1003, 1007, 1008, 1009}  # and the fatal Pusher codes, 4000-4299
BARRIER = b"fuzz-barrier"


@st.composite
def wire_frames(draw: st.DrawFn) -> list[Frame]:
    out: list[Frame] = []
    key = draw(st.binary(min_size=4, max_size=4))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["text", "text", "text", "bad-utf8", "odd", "message"]))
        if kind == "text":
            out.append(Frame(OP_TEXT, draw(client_frame()).encode(), key=key))
        elif kind == "bad-utf8":
            out.append(Frame(OP_TEXT, b'{"event":"\xff\xfe"}', key=key))
        elif kind == "odd":
            out.append(draw(odd_frame(draw(st.sampled_from([125, 4096, MAX_MESSAGE])), True)))
        else:
            out += draw(message_frames(4096, True))
    return out


class Stream:
    """Server bytes from a socket, with what came along with the 101 head."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.buf = buffered

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes]:
        b0, b1 = self.exactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.exactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.exactly(8))
        return b0 & 0x0F, self.exactly(n)


def exchange(server: RunningServer, frames: list[Frame]) -> int | None:
    """Send ``frames`` and the barrier ping on a new WebSocket; the server's close code, or
    None when it answered the barrier (still open)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(upgrade_request(server.host, server.port, f"/app/{server.app['key']}"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, "closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        stream = Stream(sock, head.split(b"\r\n\r\n", 1)[1])
        with contextlib.suppress(OSError):  # closed while we wrote: its close frame is read
            sock.sendall(frame_bytes([*frames, Frame(OP_PING, BARRIER)]))
        while True:
            try:
                opcode, payload = stream.frame()
            except (EOFError, ConnectionResetError):
                raise AssertionError("the connection ended without a close frame") from None
            if opcode == OP_CLOSE:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if opcode == OP_PONG and payload == BARRIER:
                return None


def test_random_frames_leave_the_server_healthy(server: RunningServer) -> None:
    codes: list[int | None] = []
    examples = max(15, settings.default.max_examples // 4)

    @settings(max_examples=examples, suppress_health_check=list(HealthCheck))
    @given(wire_frames())
    @example([Frame(OP_TEXT, DEEP_DATA.encode())])  # item 6: was a 1011 and a traceback
    @example([Frame(OP_TEXT, DEEP_CHANNEL_DATA.encode()), Frame(OP_TEXT, HUGE.encode())])
    @example([Frame(OP_TEXT, b'{"event":"\xff"}')])  # 1007: one example at least is closed
    def one(frames: list[Frame]) -> None:
        code = exchange(server, frames)
        codes.append(code)
        assert code is None or code in CLOSE_CODES or 4000 <= code < 4300, code

    one()
    assert health_status(server) == 200
    log = server.log()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    assert None in codes and any(c is not None for c in codes), codes  # both outcomes seen
