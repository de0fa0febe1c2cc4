"""The listening side: accepts connections within the node's socket budget, coalesces writes
per loop tick, sweeps time-outs, and offers the steps of a drain (the sequence is the server's).

A listener serves two narrow things and nothing else of the application: a
:data:`~ressonance.exchange.RequestHandler` for HTTP and a
:class:`~ressonance.transport.gateway.Gateway` for WebSockets (docs/design.md "Seams").
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from ressonance.exchange import RequestHandler
from ressonance.protocol import codes
from ressonance.transport.edge import OPEN, Edge
from ressonance.transport.gateway import Gateway

log = logging.getLogger("ressonance.transport")

FD_RESERVE = 16  # descriptors no socket may take: the broker's reconnects, files, libuv's own
HTTP_ROOM = 16  # descriptors only HTTP connections may take: /health and the API at the limit
# Over max_http_connections, only a connection waiting this long (at most half the handshake
# time-out) is evicted: a reconnect storm's handshakes are all younger and all admitted.
EVICT_AFTER = 2.0


@dataclass(frozen=True, slots=True)
class Limits:
    """A listener's time-outs (seconds) and sizes (bytes): the server makes them from its
    settings, whose defaults and meaning docs/configuration.md gives."""

    activity_timeout: float
    pong_timeout: float
    handshake_timeout: float
    keep_alive_timeout: float
    max_message_bytes: int
    max_request_bytes: int
    write_buffer_bytes: int
    close_slow_consumers: bool
    max_http_connections: int
    close_timeout: float = 3.0  # a close handshake's peer has this long to answer


def open_fds() -> int:
    """How many file descriptors this process has open (0 where it cannot tell)."""
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path))
        except OSError:
            continue
    return 0


class Listener:
    """Accepts connections and is the shared context of every :class:`Edge` it makes: the
    handler, the gateway, the limits, the socket budget and the write coalescing."""

    def __init__(
        self, limits: Limits, handler: RequestHandler, gateway: Gateway | None = None
    ) -> None:
        self.limits = limits
        self.handler = handler
        self.gateway = gateway  # None: no WebSockets here (an upgrade is answered 404)
        self.connections: set[Edge] = set()
        # connections in the HTTP phase, the one longest without a complete request first
        self.http: dict[Edge, float] = {}  # -> when it opened or last completed a request
        self.max_sockets = sys.maxsize  # what RLIMIT_NOFILE leaves for sockets (refresh_limits)
        self._other_fds = 0
        self.draining = False
        # counters since start, read by metrics at scrape time
        self.frames_dropped = 0  # frames not queued on a slow consumer (slow_consumer="drop")
        self.slow_closes = 0  # slow consumers closed with 4100 (slow_consumer="close")
        # app id -> [bytes, text messages] read on its WebSockets now closed
        self._ws_in: dict[str, list[int]] = {}
        self.http_bytes_in = 0
        self.http_bytes_out = 0
        self.closes: dict[tuple[str, int], int] = {}  # (app id, close code) -> WebSockets
        self.refusals: dict[int, int] = {}  # HTTP status or Pusher code -> refused handshakes
        self._dirty: list[Edge] = []
        # called once per loop tick after its writes (the node measures publish latency)
        self.flushed: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        self.now = self._loop.time
        self._server: asyncio.Server | None = None

    async def listen(
        self, host: str, port: int, sock: socket.socket | None = None, reuse_port: bool = False
    ) -> None:
        """Listen on ``host:port`` (or an open ``sock``); ``reuse_port`` lets several worker
        processes share the port (SO_REUSEPORT: the kernel spreads new connections)."""
        if sock is not None:
            self._server = await self._loop.create_server(lambda: Edge(self), sock=sock)
        else:
            self._server = await self._loop.create_server(
                lambda: Edge(self),
                host,
                port,
                backlog=4096,
                reuse_address=True,
                reuse_port=reuse_port or None,
            )
        self._other_fds = open_fds()
        self.refresh_limits()

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._server.sockets) if self._server else []

    # the socket budget ---------------------------------------------------------------------
    def refresh_limits(self) -> None:
        """Sockets the file-descriptor limit leaves, less a reserve (read again every sweep, so
        a limit changed on the running process counts)."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            self.max_sockets = sys.maxsize
        else:
            self.max_sockets = soft - self._other_fds - FD_RESERVE

    def opened(self, edge: Edge) -> bool:
        """A new connection, in the HTTP phase. Over ``max_http_connections`` or the sockets the
        fd limit leaves, the HTTP connection longest without a complete request is evicted to
        make room, so trickling clients cannot keep new ones (and /health) out; over the HTTP
        cap only if it has waited :data:`EVICT_AFTER` (a burst of fresh handshakes, such as a
        reconnect storm, is admitted whole). False: no room (every other socket is a
        WebSocket); the caller answers 503."""
        connections = self.connections
        http = self.http
        now = self.now()
        connections.add(edge)
        http[edge] = now
        out_of_fds = len(connections) > self.max_sockets
        if out_of_fds or len(http) > self.limits.max_http_connections:
            oldest, since = next(iter(http.items()))
            if oldest is edge:
                return False
            # the fd limit is hard; the HTTP cap sheds only connections that are slow
            if out_of_fds or now - since >= min(EVICT_AFTER, self.limits.handshake_timeout / 2):
                del http[oldest]
                oldest.evict()
        return True

    def requested(self, edge: Edge) -> None:
        """``edge`` sent a complete request: it goes last in the eviction order."""
        http = self.http
        if edge in http:
            del http[edge]
            http[edge] = self.now()

    def upgrading(self, edge: Edge) -> bool:
        """``edge`` leaves the HTTP phase for a WebSocket, if one more leaves room for HTTP
        connections (``HTTP_ROOM``) under the fd limit."""
        websockets = len(self.connections) - len(self.http)
        if websockets >= self.max_sockets - HTTP_ROOM:
            return False
        self.http.pop(edge, None)
        return True

    def closed(self, edge: Edge) -> None:
        self.connections.discard(edge)
        self.http.pop(edge, None)

    def websocket_closed(self, app_id: str, code: int, edge: Edge) -> None:
        key = (app_id, code)
        self.closes[key] = self.closes.get(key, 0) + 1
        traffic = self._ws_in.setdefault(app_id, [0, 0])
        traffic[0] += edge.bytes_in
        traffic[1] += edge.messages_in

    def ws_in(self) -> dict[str, list[int]]:
        """App id -> [bytes, text messages] read on its WebSockets since start (the open ones
        summed now: each connection counts its own, so no shared counter is touched per read)."""
        total = {app_id: list(t) for app_id, t in self._ws_in.items()}
        for edge in self.connections:
            session = edge.session
            if session is not None and edge.bytes_in:
                traffic = total.setdefault(session.app.id, [0, 0])
                traffic[0] += edge.bytes_in
                traffic[1] += edge.messages_in
        return total

    def refused(self, code: int) -> None:
        """A WebSocket handshake refused: the HTTP status, or the Pusher code of admission."""
        self.refusals[code] = self.refusals.get(code, 0) + 1

    def unready(self) -> list[str]:
        """This listener's reason not to take new connections: its socket budget is spent."""
        websockets = len(self.connections) - len(self.http)
        if websockets >= self.max_sockets - HTTP_ROOM:
            return ["at the node's connection limit (file descriptors)"]
        return []

    # write coalescing ----------------------------------------------------------------------
    def mark_dirty(self, edge: Edge) -> None:
        """``edge`` has queued frames: flush them at the end of this loop iteration."""
        dirty = self._dirty
        dirty.append(edge)
        if len(dirty) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for edge in dirty:
            edge.flush()
        if self.flushed is not None:
            self.flushed()

    def slow_consumer(self, edge: Edge) -> None:
        """The socket's write buffer is over the high-water mark (docs/design.md)."""
        if not self.limits.close_slow_consumers:
            self.frames_dropped += 1
            return
        self.slow_closes += 1
        session = edge.session
        log.warning(
            "closing slow consumer %s (4100)",
            session.socket_id,
            extra={"app_id": session.app.id, "socket_id": session.socket_id},
        )
        edge.fail_past_limit(codes.OVER_CAPACITY, "Slow consumer: too much unsent data")

    # time-outs -----------------------------------------------------------------------------
    def check_timeouts(self) -> None:
        """One pass over every connection (the server calls it every second): pings, pong,
        handshake, keep-alive and close time-outs; and the fd limit is read again."""
        self.refresh_limits()
        now = self.now()
        for edge in list(self.connections):
            edge.check_timeouts(now)

    # the steps of a drain (the server orders them) -----------------------------------------
    def stop_accepting(self) -> None:
        """No new connections; new upgrades and keep-alive are refused from now on."""
        self.draining = True
        if self._server is not None:
            self._server.close()

    def close_all(self, code: int, reason: str) -> None:
        """Every WebSocket gets ``pusher:error`` and a close with ``code``; an HTTP connection
        closes when it has no request in progress (else after its response)."""
        gateway = self.gateway
        for edge in list(self.connections):
            if edge.state == OPEN and gateway is not None:
                gateway.fail(edge, code, reason)
            else:
                edge.close_if_idle()

    async def wait_closed(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every connection to be gone."""
        deadline = self.now() + timeout
        while self.connections and self.now() < deadline:
            await asyncio.sleep(0.05)

    def abort_all(self) -> None:
        """End what is left at once (peers that did not answer a close)."""
        for edge in list(self.connections):
            if edge.transport is not None:
                edge.transport.abort()
