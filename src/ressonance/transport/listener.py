"""The listening side: accepts connections, coalesces writes per loop tick, sweeps time-outs,
and drains on shutdown (close code 4200, PROTOCOL.md Part B item 2)."""

from __future__ import annotations

import asyncio
import logging
import socket

from ressonance.apps.base import AppStore
from ressonance.config import Settings
from ressonance.http.api import Api
from ressonance.node.node import Node
from ressonance.protocol import codes
from ressonance.transport.edge import OPEN, Edge

log = logging.getLogger("ressonance.transport")


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

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._server.sockets) if self._server else []

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
