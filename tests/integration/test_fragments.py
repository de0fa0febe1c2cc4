"""A WebSocket message in assembly costs bounded memory and CPU, whatever its framing.

``max_message_kb`` bounds the payload of a message; these tests check that the framing around it
(many empty or tiny continuation frames, a frame arriving a byte at a time) cannot cost more:
the server closes such a message with 1009 and stays linear in what it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

import pytest

from tests.support.proc import cpu_seconds, rss_kib
from tests.support.server import RunningServer, run_server
from tests.support.wsclient import (
    OP_CONT,
    OP_TEXT,
    RawConn,
    assert_alive,
    encode_frame,
    upgrade_request,
)

pytestmark = pytest.mark.timeout(60)
START = b'{"event":"pusher:ping","data":"'


async def established(server: RunningServer) -> RawConn:
    conn = await RawConn.open(server.host, server.port)
    assert await conn.handshake(server.host, server.port, "/app/test-key?protocol=7") == 101
    opcode, payload = await conn.read_frame()
    assert opcode == OP_TEXT and b"connection_established" in payload, payload
    return conn


async def stream_until_closed(conn: RawConn, chunk: bytes, budget: int) -> tuple[int | None, int]:
    """Write ``chunk`` again and again until the server sends its close frame or ``budget`` bytes
    are out; (close code or None, bytes written)."""
    closing = asyncio.create_task(conn.read_until_close(timeout=30))
    sent = 0
    try:
        while sent < budget and not closing.done():
            try:
                await conn.write(chunk)
            except (OSError, TimeoutError):
                break
            sent += len(chunk)
            await asyncio.sleep(0.001)  # let the reader see a close frame
        done, _ = await asyncio.wait({closing}, timeout=3)
        if not done:
            return None, sent
        code, _reason, _frames = closing.result()
        return code, sent
    finally:
        closing.cancel()


@pytest.mark.asyncio
async def test_endless_empty_continuation_frames_close_1009(server: RunningServer) -> None:
    """Empty continuation frames add nothing to the payload: 6 wire bytes each, forever."""
    pid = server.process.pid
    rss_before = rss_kib(pid)
    conn = await established(server)
    try:
        await conn.write(encode_frame(OP_TEXT, START, fin=False))
        empty = encode_frame(OP_CONT, b"", fin=False) * 10_000  # 60,000 wire bytes
        code, sent = await stream_until_closed(conn, empty, budget=3_000_000)
    finally:
        await conn.close()
    grown = rss_kib(pid) - rss_before
    assert code == 1009, f"not closed after {sent} bytes of empty fragments; RSS +{grown} KiB"
    assert sent < 1_000_000, sent
    await assert_alive(server)


@pytest.mark.asyncio
async def test_tiny_fragments_cost_about_their_payload(server: RunningServer) -> None:
    """20 sockets each send 99 KiB of payload in 2-byte fragments (under max_message_kb): the
    server's memory grows by about the payload, not by ~28 times it, or the socket is closed."""
    pid = server.process.pid
    conns = [await established(server) for _ in range(20)]
    rss_before = rss_kib(pid)
    tiny = b"".join(encode_frame(OP_CONT, b"xx", fin=False) for _ in range(1000))  # 2,000 B
    closed = 0
    try:
        for conn in conns:
            await conn.write(encode_frame(OP_TEXT, START, fin=False))
        for _ in range(50):  # 50 x 2,000 = 100,000 payload bytes per socket
            for conn in conns:
                with contextlib.suppress(OSError, TimeoutError):  # closed already
                    await conn.write(tiny)
        await asyncio.sleep(0.5)
        grown = rss_kib(pid) - rss_before
        for conn in conns:
            with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
                code, _reason, _ = await conn.read_until_close(timeout=0.5)
                closed += code == 1009
    finally:
        for conn in conns:
            await conn.close()
    # 20 x 100 KB of payload is 2 MB; allow generous slack for the allocator
    assert closed == 20 or grown < 12 * 1024, f"RSS +{grown} KiB, {closed} closed with 1009"
    await assert_alive(server)


def _send_tail_byte_by_byte(host: str, port: int, frame: bytes, tail: int) -> None:
    """Upgrade, send ``frame`` but its last ``tail`` bytes at once, then those one per send()
    (paced, so that most reach the server as reads of their own); wait for the pong."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(upgrade_request(host, port, "/app/test-key?protocol=7"))
        got = b""
        while b"connection_established" not in got:
            got += sock.recv(4096)
        cut = len(frame) - tail
        sock.sendall(frame[:cut])
        for i in range(cut, len(frame)):
            sock.send(frame[i : i + 1])
            time.sleep(0.00005)
        reply = b""
        while b"pusher:pong" not in reply:
            data = sock.recv(4096)
            assert data, "closed before the pong"
            reply += data


@pytest.mark.asyncio
async def test_frame_arriving_byte_by_byte_costs_linear_cpu(tmp_path: Path) -> None:
    """The last 8,000 bytes of a 1 MiB frame read a byte at a time: the receive buffer must not
    be copied whole on every read (quadratic CPU: ~1 MiB copied per byte)."""
    with run_server(tmp_path, settings={"max_message_kb": 1024}) as srv:
        pid = srv.process.pid
        frame = encode_frame(OP_TEXT, START + b"x" * (1000 * 1024) + b'"}')
        before = cpu_seconds(pid)
        await asyncio.to_thread(_send_tail_byte_by_byte, srv.host, srv.port, frame, 8000)
        used = cpu_seconds(pid) - before
        assert used < 0.4, f"server CPU {used:.2f}s for one {len(frame)}-byte frame"
        await assert_alive(srv)
