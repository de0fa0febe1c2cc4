"""Clients that send a byte now and then cannot hold sockets: the HTTP phase and the close
handshake have absolute deadlines, HTTP connections have a node-wide cap, and a reserve of file
descriptors keeps /health answering when the process runs out of them."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ressonance.transport.listener import EVICT_AFTER
from tests.support.proc import cpu_seconds
from tests.support.server import RunningServer, run_server
from tests.support.wsclient import OP_BINARY, OP_CLOSE, OP_PING, encode_frame, upgrade_request

pytestmark = pytest.mark.timeout(60)
TIMEOUT = 2  # handshake_timeout and keep_alive_timeout of the test server
SWEEP = 1.0  # time-outs are checked once a second


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp("trickle")
    settings = {"handshake_timeout": TIMEOUT, "keep_alive_timeout": TIMEOUT}
    with run_server(tmp, settings=settings) as running:
        yield running


def is_closed(sock: socket.socket) -> bool:
    """The server ended the stream (EOF or reset); data it sent is skipped. Never waits."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)
    return True


def trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> float | None:
    """Send ``data`` a byte every ``every`` seconds (again from its start when it runs out)
    until the server closes ``sock``; the seconds that took, None if not within ``limit``."""
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < limit:
        if is_closed(sock):
            return time.monotonic() - started
        try:
            sock.send(data[i % len(data) : i % len(data) + 1])
        except OSError:
            return time.monotonic() - started
        i += 1
        time.sleep(every)
    return None


def recv_until(sock: socket.socket, marker: bytes, timeout: float = 5) -> bytes:
    """What the server sends up to and including ``marker``."""
    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(4096)
        assert data, f"closed before {marker!r}: {got!r}"
        got += data
    sock.settimeout(5)
    return got


def connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_head(server: RunningServer) -> bytes:
    return f"GET /health HTTP/1.1\r\nHost: {server.host}\r\n".encode() + b"X-Pad: " + b"a" * 64


def after_a_response(server: RunningServer, sock: socket.socket) -> None:
    sock.sendall(f"GET /health HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
    assert recv_until(sock, b"}").startswith(b"HTTP/1.1 200"), "no keep-alive response"


def body_start(server: RunningServer, sock: socket.socket) -> None:
    head = "POST /apps/1001/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    sock.sendall(head.encode())


@pytest.mark.parametrize(
    "before",
    [None, after_a_response, body_start],
    ids=["first request head", "next keep-alive request", "request body"],
)
def test_a_trickled_request_is_cut_at_its_time_out(
    fast: RunningServer, before: Callable[[RunningServer, socket.socket], None] | None
) -> None:
    """A byte every 0.4 s resets no clock: the request must be complete within the time-out."""
    with connect(fast) as sock:
        if before is not None:
            before(fast, sock)
        took = trickle(sock, request_head(fast), every=0.4, limit=TIMEOUT + SWEEP + 6)
    assert took is not None, f"still open after {TIMEOUT + SWEEP + 6} s of trickling"
    assert took < TIMEOUT + SWEEP + 3, took


def test_a_closing_websocket_ends_after_3_s_whatever_the_peer_sends(fast: RunningServer) -> None:
    """The server closes (1003 for a binary frame) and the peer never answers the close, only
    sends a byte now and then: the connection ends 3 s after the server's close frame."""
    with connect(fast) as sock:
        sock.sendall(upgrade_request(fast.host, fast.port, "/app/test-key?protocol=7"))
        recv_until(sock, b"connection_established")
        sock.sendall(encode_frame(OP_BINARY, b"x"))
        got = recv_until(sock, b"Binary")  # the reason of the server's close frame
        assert bytes([0x80 | OP_CLOSE]) in got and (1003).to_bytes(2, "big") in got, got
        took = trickle(sock, encode_frame(OP_PING, b"p"), every=0.4, limit=3 + SWEEP + 6)
    assert took is not None, f"still open after {3 + SWEEP + 6} s of trickling"
    assert took < 3 + SWEEP + 3, took


def health(server: RunningServer, timeout: float = 2) -> float | None:
    """Seconds GET /health took to answer 200, None if it did not within ``timeout``."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{server.http_url}/health", timeout=timeout) as resp:
            return time.monotonic() - started if resp.status == 200 else None
    except OSError:
        return None


def test_http_connections_over_the_cap_evict_the_longest_waiting(tmp_path: Path) -> None:
    """max_http_connections = 10: 10 silent sockets, then (once they have waited EVICT_AFTER)
    15 more: the 10 old ones are closed at once (not after handshake_timeout), the 15 young ones
    are not (no one older is left to evict), and /health is served."""
    settings = {"handshake_timeout": 30, "max_http_connections": 10}
    with run_server(tmp_path, settings=settings) as srv:
        socks = []
        for _ in range(10):
            socks.append(connect(srv))
            time.sleep(0.01)  # in order
        time.sleep(EVICT_AFTER + 0.5)
        for _ in range(15):
            socks.append(connect(srv))
            time.sleep(0.01)
        try:
            time.sleep(0.5)
            closed = [is_closed(s) for s in socks]
            assert closed == [True] * 10 + [False] * 15, closed
            assert health(srv) is not None
        finally:
            for sock in socks:
                sock.close()


def test_a_reconnect_storm_over_the_http_cap_is_admitted_whole(tmp_path: Path) -> None:
    """200 WebSocket handshakes opened at once against max_http_connections = 20: every one is
    upgraded. The cap sheds slow connections, never a burst of fresh ones (a reconnect storm
    after a node went away); before, all but 20 were closed unanswered."""
    settings = {"handshake_timeout": 30, "max_http_connections": 20}
    with run_server(tmp_path, settings=settings) as srv:
        socks = [connect(srv) for _ in range(200)]  # all connected before any request is sent
        try:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(upgrade_request(srv.host, srv.port, "/app/test-key?protocol=7"))
            statuses = []
            for sock in socks:
                try:
                    statuses.append(recv_until(sock, b"\r\n\r\n").split(b" ", 2)[1])
                except (AssertionError, OSError):
                    statuses.append(b"closed")
            assert statuses == [b"101"] * 200, [x for x in statuses if x != b"101"][:5]
        finally:
            for sock in socks:
                sock.close()


def test_health_answers_when_trickling_sockets_use_up_the_fd_limit(tmp_path: Path) -> None:
    """The server may open 120 files; 150 sockets trickle a header byte each every 0.5 s and
    are opened again when closed, for 6 s. /health answers every time within 1.5 s, and the
    server does not spin (CPU well under the elapsed time)."""
    settings = {"handshake_timeout": 3}
    with run_server(tmp_path, settings=settings) as srv:
        pid = srv.process.pid
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (120, 120))
        time.sleep(SWEEP + 0.5)  # the sweep reads the new limit
        head = request_head(srv)
        socks = [connect(srv) for _ in range(150)]
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        answers: list[float | None] = []
        opened = 150
        try:
            for tick in range(12):
                for i, sock in enumerate(socks):
                    if is_closed(sock) and opened < 2000:
                        sock.close()
                        socks[i] = sock = connect(srv)
                        opened += 1
                    with contextlib.suppress(OSError):  # closed since
                        sock.send(head[tick : tick + 1])
                answers.append(health(srv))
                time.sleep(max(0.0, started + 0.5 * (tick + 1) - time.monotonic()))
            cpu = cpu_seconds(pid) - cpu_before
            elapsed = time.monotonic() - started
        finally:
            for sock in socks:
                sock.close()
        failed = sum(a is None or a > 1.5 for a in answers)
        assert failed == 0, f"/health: {answers} ({opened} sockets opened)"
        assert cpu < 0.6 * elapsed, f"server CPU {cpu:.2f}s in {elapsed:.2f}s"


def upgrade_status(server: RunningServer) -> tuple[int | None, socket.socket, bytes]:
    """Open a WebSocket by hand: the status of the answer (None: closed unanswered), the
    socket, and what came with the answer."""
    sock = connect(server)
    sock.sendall(upgrade_request(server.host, server.port, "/app/test-key?protocol=7"))
    try:
        got = recv_until(sock, b"\r\n\r\n")
    except (AssertionError, OSError):
        return None, sock, b""
    return int(got.split(b" ", 2)[1]), sock, got


def test_websockets_leave_room_for_http_at_the_fd_limit(tmp_path: Path) -> None:
    """With 64 files allowed, WebSockets are opened until one is refused: it is answered 503
    (not dropped unanswered), the others stay open, and /health is served."""
    with run_server(tmp_path) as srv:
        resource.prlimit(srv.process.pid, resource.RLIMIT_NOFILE, (64, 64))
        time.sleep(SWEEP + 0.5)  # the sweep reads the new limit
        socks: list[socket.socket] = []
        try:
            status: int | None = 101
            while status == 101 and len(socks) < 80:
                status, sock, _ = upgrade_status(srv)
                socks.append(sock)
            assert status == 503, f"{status} after {len(socks) - 1} WebSockets"
            assert health(srv) is not None
            assert not any(is_closed(s) for s in socks[:-1])
        finally:
            for sock in socks:
                sock.close()


def test_a_new_websocket_is_not_pinged_before_activity_timeout(fast: RunningServer) -> None:
    """The activity clock of a WebSocket starts at its upgrade (the HTTP phase keeps none)."""
    status, sock, got = upgrade_status(fast)
    with sock:
        assert status == 101
        if b"connection_established" not in got:
            recv_until(sock, b"connection_established")
        time.sleep(2 * SWEEP + 0.5)
        sock.settimeout(0.5)
        try:
            extra = sock.recv(4096)
        except TimeoutError:
            extra = b""
        assert b"pusher:ping" not in extra, extra
