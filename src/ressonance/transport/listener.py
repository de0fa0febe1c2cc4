"""The listening side: accepts connections within the node's socket budget, coalesces writes
per loop tick, sweeps time-outs, and drains on shutdown (close code 4200, docs/protocol.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import sys

from ressonance.apps.base import AppStore
from ressonance.config import Settings
from ressonance.http.api import Api
from ressonance.node.node import Node
from ressonance.protocol import codes
from ressonance.transport.edge import OPEN, Edge

log = logging.getLogger("ressonance.transport")

FD_RESERVE = 16  # descriptors no socket may take: the broker's reconnects, files, libuv's own
HTTP_ROOM = 16  # descriptors only HTTP connections may take: /health and the API at the limit
# Over max_http_connections, only a connection waiting this long (at most half the handshake
# time-out) is evicted: a reconnect storm's handshakes are all younger and all admitted.
EVICT_AFTER = 2.0


def open_fds() -> int:
    """How many file descriptors this process has open (0 where it cannot tell)."""
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path))
        except OSError:
            continue
    return 0


class Listener:
    """Shared context of every :class:`Edge`: the node, the API, limits and time-outs."""

    close_timeout = 3.0
    announce_delay = 0.1  # seconds between telling the other nodes of a drain and the 4200s

    def __init__(self, settings: Settings, node: Node, api: Api, apps: AppStore) -> None:
        self.node = node
        self.api = api
        self.apps = apps
        self.activity_timeout = float(settings.activity_timeout)
        self.pong_timeout = float(settings.pong_timeout)
        self.handshake_timeout = float(settings.handshake_timeout)
        self.keep_alive_timeout = float(settings.keep_alive_timeout)
        self.max_message_bytes = settings.max_message_kb * 1024
        self.max_request_bytes = settings.max_request_kb * 1024
        self.write_buffer_bytes = settings.write_buffer_kb * 1024
        self.close_slow_consumers = settings.slow_consumer == "close"
        self.connections: set[Edge] = set()
        # connections in the HTTP phase, the one longest without a complete request first
        self.http: dict[Edge, float] = {}  # -> when it opened or last completed a request
        self.max_http = settings.max_http_connections
        self.max_sockets = sys.maxsize  # what RLIMIT_NOFILE leaves for sockets (refresh_limits)
        self._other_fds = 0
        self.draining = False
        self.dropped_frames = 0
        self._dirty: list[Edge] = []
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
        if out_of_fds or len(http) > self.max_http:
            oldest, since = next(iter(http.items()))
            if oldest is edge:
                return False
            # the fd limit is hard; the HTTP cap sheds only connections that are slow
            if out_of_fds or now - since >= min(EVICT_AFTER, self.handshake_timeout / 2):
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

    def slow_consumer(self, edge: Edge) -> None:
        """The socket's write buffer is over the high-water mark (docs/design.md)."""
        self.dropped_frames += 1
        if self.close_slow_consumers:
            log.warning("closing slow consumer %s (4100)", edge.session.socket_id)
            edge.fail_past_limit(codes.OVER_CAPACITY, "Slow consumer: too much unsent data")

    # time-outs -----------------------------------------------------------------------------
    def sweep(self) -> None:
        self.refresh_limits()
        now = self.now()
        for edge in list(self.connections):
            edge.check_timeouts(now)

    # shutdown ------------------------------------------------------------------------------
    async def drain(self, timeout: float) -> None:
        """Stop accepting, close every WebSocket with 4200 so clients reconnect at once
        (elsewhere, behind a load balancer), and wait up to ``timeout`` for them to go."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        # The other nodes first hear that this node's connections are leaving, so that the
        # clients reconnecting to them are not counted twice against max_connections.
        self.node.draining()
        if self.node.has_peers:
            await asyncio.sleep(self.announce_delay)
        for edge in list(self.connections):
            if edge.state == OPEN:
                self.node.fail(edge, codes.RECONNECT_NOW, "Server is restarting")
            else:
                edge.close_if_idle()
        deadline = self.now() + timeout
        while self.connections and self.now() < deadline:
            await asyncio.sleep(0.05)
        for edge in list(self.connections):
            if edge.transport is not None:
                edge.transport.abort()
