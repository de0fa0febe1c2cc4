"""One TCP connection: HTTP/1.1 until it upgrades, then a Pusher WebSocket.

No task per connection: the loop calls :class:`Edge` back; frames queued by :meth:`Edge.send`
during one loop iteration go out in one write (:class:`Listener` flushes them); time-outs are
checked by :meth:`Listener.check_timeouts`, one periodic pass over all connections. The HTTP
phase and the close handshake have absolute deadlines: bytes trickling in never extend them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from ressonance.errors import HttpError, PusherError
from ressonance.exchange import Request, Response
from ressonance.faultlog import FaultLog
from ressonance.protocol import codes, messages
from ressonance.protocol.framing import OP_PONG, close_frame, encode, text_frame
from ressonance.protocol.session import Session
from ressonance.transport import handshake
from ressonance.transport.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameParser,
    Message,
    parse_close,
)
from ressonance.transport.http11 import RequestReader, serialize

if TYPE_CHECKING:
    from ressonance.transport.gateway import Gateway
    from ressonance.transport.listener import Listener

log = logging.getLogger("ressonance.transport")
faults = FaultLog(log)  # per process: no client can flood the log with tracebacks

HTTP, OPEN, CLOSING, CLOSED = 0, 1, 2, 3


class Edge(asyncio.Protocol):
    """The connection's state; the hub sees it as a :class:`~ressonance.node.hub.Socket`."""

    __slots__ = (
        "_busy",
        "_detached",
        "_idle",
        "_out",
        "_parser",
        "_paused",
        "_pending",
        "_reader",
        "_task",
        "bytes_in",
        "close_code",
        "deadline",
        "gateway",
        "listener",
        "messages_in",
        "ping_sent",
        "seen",
        "session",
        "state",
        "transport",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.state = HTTP
        self.session: Session = None  # type: ignore[assignment]  # set by Gateway.connect
        self.gateway: Gateway = None  # type: ignore[assignment]  # set when the WebSocket opens
        self.seen = 0.0  # a WebSocket's last input (activity_timeout)
        self.ping_sent = 0.0
        self.deadline = 0.0  # HTTP: the request must be complete by then; CLOSING: abort then
        self.close_code: int | None = None  # the WebSocket's close code, ours or the peer's
        self.bytes_in = 0  # read as a WebSocket (metrics: summed per app at scrape time)
        self.messages_in = 0  # text messages received
        self._idle = False  # HTTP keep-alive: a response went out, no byte of the next request
        self._reader: RequestReader | None = RequestReader(listener.limits.max_request_bytes)
        self._parser: FrameParser | None = None
        self._out: list[bytes] | None = None
        self._paused = False
        self._pending: deque[Request] | None = None
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._detached = False

    # asyncio callbacks ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        limits = self.listener.limits
        transport.set_write_buffer_limits(high=limits.write_buffer_bytes)
        self.deadline = self.listener.now() + limits.handshake_timeout
        if not self.listener.opened(self):
            self._refuse(HttpError(503, "Server is at its connection limit"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.listener.closed(self)
        if self.session is not None:  # a WebSocket ended: with its close code, or 1006
            code = self.close_code or codes.WS_ABNORMAL
            self.listener.websocket_closed(self.session.app.id, code, self)
        self._drop_reader()
        self._detach()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def data_received(self, data: bytes) -> None:
        listener = self.listener
        if self.state == HTTP:
            listener.http_bytes_in += len(data)
            if self._idle:  # the first bytes of the next request: it has handshake_timeout
                self._idle = False
                self.deadline = self.listener.now() + self.listener.limits.handshake_timeout
            self._http_received(data)
        elif self._parser is not None:
            self.bytes_in += len(data)
            self.seen = listener.now()
            self.ping_sent = 0.0
            self._ws_received(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    # HTTP ----------------------------------------------------------------------------------
    def _http_received(self, data: bytes) -> None:
        assert self._reader is not None
        try:
            requests, rest = self._reader.feed(data)
            for request in requests:
                if handshake.is_websocket_path(request.path) and request is requests[-1]:
                    try:
                        self._upgrade(request, rest or b"")
                    except HttpError as refused:
                        self.listener.refused(refused.status)
                        raise
                    return
                if request.upgrade:
                    raise HttpError(400, "Upgrade is only supported on /app/{key}")
                self._queue(request)
        except HttpError as fault:
            self._refuse(fault)

    def _drop_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _refuse(self, fault: HttpError) -> None:
        """Answer a request that cannot be served, then close (bad input never goes on)."""
        if self.transport is None or self.state != HTTP:
            return
        body = messages.dumps({"error": fault.message, "code": fault.status}).encode()
        headers = handshake.refusal_headers(fault)
        out = serialize(Response(fault.status, body, headers=headers), False)
        self.listener.http_bytes_out += len(out)
        self.transport.write(out)
        self._drop_reader()
        self._closing()
        self.transport.close()

    def evict(self) -> None:
        """Make room for a new connection (:meth:`Listener.opened`): end this one now."""
        self._drop_reader()
        self._closing()
        if self.transport is not None:
            self.transport.abort()

    def _queue(self, request: Request) -> None:
        self.listener.requested(self)
        if self._pending is None:
            self._pending = deque()
        self._pending.append(request)
        if len(self._pending) > 16 and self.transport is not None:
            self.transport.pause_reading()
        if not self._busy:
            self._busy = True
            self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        pending = self._pending
        assert pending is not None
        while pending and self.state == HTTP and self.transport is not None:
            request = pending.popleft()
            try:
                response = await self.listener.handler(request)
            except Exception:
                faults.exception("internal error serving %s %s", request.method, request.path)
                response = Response(500, b'{"error":"Internal server error","code":500}')
            if self.state != HTTP or self.transport.is_closing():
                return
            keep_alive = request.keep_alive and not self.listener.draining
            out = serialize(response, keep_alive)
            self.listener.http_bytes_out += len(out)
            self.transport.write(out)
            if not keep_alive:
                self._closing()
                self.transport.close()
                return
            if len(pending) <= 16:
                self.transport.resume_reading()
        self._busy = False
        self._await_request()

    def _await_request(self) -> None:
        """After the responses: the next request must be complete within keep_alive_timeout,
        or within handshake_timeout of its first byte (one partly received: from now)."""
        if self.state != HTTP or self._reader is None:
            return
        self._idle = self._reader.between_requests
        limits = self.listener.limits
        timeout = limits.keep_alive_timeout if self._idle else limits.handshake_timeout
        self.deadline = self.listener.now() + timeout

    # upgrade -------------------------------------------------------------------------------
    def _upgrade(self, request: Request, rest: bytes) -> None:
        upgrade = handshake.check(request)  # HttpError → refused by the caller
        if self.listener.gateway is None:
            raise HttpError(404, "Not found")
        if self.listener.draining:
            raise HttpError(503, "Server is shutting down")
        if not self.listener.upgrading(self):
            raise HttpError(503, "Server is at its connection limit")
        assert self.transport is not None
        self.transport.pause_reading()
        self._drop_reader()
        self._task = asyncio.get_running_loop().create_task(self._open(upgrade, rest))

    async def _open(self, upgrade: handshake.Upgrade, rest: bytes) -> None:
        listener = self.listener
        gateway = listener.gateway
        assert gateway is not None  # checked by _upgrade
        try:
            admission = await gateway.admit(upgrade.key, upgrade.protocol, upgrade.origin)
        except PusherError as exc:
            refused: PusherError | None = exc
        else:
            refused = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(serialize(handshake.response(upgrade), True))
        self.state = OPEN
        self.seen = listener.now()  # activity_timeout counts from here
        self._parser = FrameParser(listener.limits.max_message_bytes)
        if refused is not None:
            listener.refused(refused.code)
            transport.write(text_frame(messages.error(refused.code, refused.message)))
            self._start_close(refused.code, refused.message)
        else:
            self.gateway = gateway
            gateway.connect(self, admission)
        transport.resume_reading()
        if rest:
            self._ws_received(rest)

    # WebSocket -----------------------------------------------------------------------------
    def _ws_received(self, data: bytes) -> None:
        assert self._parser is not None
        try:
            for message in self._parser.feed(data):
                if self.state == OPEN or message.opcode == OP_CLOSE:
                    self._on_message(message)  # while closing, only the peer's close counts
                if self.state == CLOSED:
                    return
        except FrameError as exc:
            self.close(exc.code, exc.reason)

    def _on_message(self, message: Message) -> None:
        opcode = message.opcode
        if opcode == OP_TEXT:
            self.messages_in += 1
            try:
                text = message.payload.decode()
            except UnicodeDecodeError:
                raise FrameError(codes.WS_INVALID_PAYLOAD, "Invalid UTF-8") from None
            try:
                self.gateway.receive(self, text)
            except Exception:
                session = self.session
                faults.exception(
                    "internal error handling a frame from %s",
                    session.socket_id,
                    extra={"app_id": session.app.id, "socket_id": session.socket_id},
                )
                self.close(codes.WS_INTERNAL_ERROR, "Internal server error")
        elif opcode == OP_PING:
            self.send(encode(OP_PONG, message.payload))
        elif opcode == OP_CLOSE:
            code = parse_close(message.payload)
            if self.close_code is None:
                self.close_code = code if code is not None else codes.WS_NO_STATUS
            # Echo the peer's close (RFC 6455 §5.5.1) unless we sent ours first; either way
            # the handshake is complete and the server ends the TCP connection.
            self.close(code if code is not None and code < 4000 else codes.WS_NORMAL, "")
            if self.transport is not None:
                self.transport.close()
        elif opcode == OP_BINARY:
            raise FrameError(codes.WS_UNSUPPORTED_DATA, "Binary frames are not supported")

    def send(self, frame: bytes) -> None:
        """Queue ``frame``; a slow consumer (write buffer over the high-water mark) is closed
        with 4100 or has the frame dropped, as configured."""
        if self.state != OPEN:
            return
        if self._paused:
            self.listener.slow_consumer(self)
            return
        out = self._out
        if out is None:
            self._out = [frame]
            self.listener.mark_dirty(self)
        else:
            out.append(frame)

    def flush(self) -> None:
        out = self._out
        self._out = None
        if out and self.transport is not None and self.state == OPEN:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self, code: int, reason: str) -> None:
        """Send a close frame and wait (at most a few seconds) for the peer's close frame."""
        if self.state != OPEN:
            return
        self.flush()
        self._start_close(code, reason)

    def fail_past_limit(self, code: int, message: str) -> None:
        """``pusher:error`` and a close with ``code``, written even though the write buffer is
        over its high-water mark (both frames are small): the slow-consumer exit."""
        if self.state != OPEN or self.transport is None:
            return
        self.flush()
        self.transport.write(text_frame(messages.error(code, message)))
        self._start_close(code, message)

    def _start_close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
        self._closing()
        if self.transport is not None:
            self.transport.write(close_frame(code, reason))
        asyncio.get_running_loop().call_soon(self._detach)

    def _detach(self) -> None:
        """Leave the node (channels, presence, counts); once, however often it is called."""
        if not self._detached and self.session is not None:
            self._detached = True
            self.gateway.disconnect(self)

    def close_if_idle(self) -> None:
        """On drain: an HTTP connection between requests closes now (one with a request being
        received or served closes after its response, which then says ``Connection: close``)."""
        reader = self._reader
        partial = reader is not None and not reader.between_requests
        if self.state == HTTP and not self._busy and not partial and self.transport is not None:
            self._closing()
            self.transport.close()

    def _closing(self) -> None:
        """The connection ends within ``close_timeout`` whatever the peer sends (or not)."""
        self.state = CLOSING
        self.deadline = self.listener.now() + self.listener.limits.close_timeout

    # time-outs (called by Listener.check_timeouts) ---------------------------------------
    def check_timeouts(self, now: float) -> None:
        limits = self.listener.limits
        transport = self.transport
        if transport is None:
            return
        if self.state == OPEN:
            if self.ping_sent:
                if now - self.ping_sent > limits.pong_timeout:
                    self.gateway.fail(self, codes.PONG_NOT_RECEIVED, "Pong reply not received")
            elif now - self.seen > limits.activity_timeout:
                self.ping_sent = now
                self.send(text_frame(messages.PING))
        elif now <= self.deadline:
            return
        elif self.state == CLOSING:
            transport.abort()
        elif self.state == HTTP and not self._busy:
            self._drop_reader()
            self._closing()
            transport.close()
