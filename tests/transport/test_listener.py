"""A Listener serves whatever handler and gateway it is given: two listeners in one process, one
with the node's WebSockets and one admin-like with only a handler, over real sockets on
127.0.0.1; and the drain steps the server orders."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from ressonance.errors import PusherError
from ressonance.exchange import Request, Response
from ressonance.protocol import codes
from ressonance.protocol.framing import text_frame
from ressonance.transport.edge import Edge
from ressonance.transport.listener import Limits, Listener

LIMITS = Limits(
    activity_timeout=120.0,
    pong_timeout=30.0,
    handshake_timeout=5.0,
    keep_alive_timeout=5.0,
    max_message_bytes=64 * 1024,
    max_request_bytes=64 * 1024,
    write_buffer_bytes=256 * 1024,
    close_slow_consumers=True,
    max_http_connections=64,
)
UPGRADE = (
    "GET /app/{key} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


class EchoGateway:
    """Admits key "good" only; answers each text message with it, reversed."""

    def __init__(self) -> None:
        self.connected: list[Edge] = []
        self.received: list[str] = []
        self.disconnected = 0

    async def admit(self, key: str, protocol: str | None, origin: str | None) -> str:
        if key != "good":
            raise PusherError(codes.APP_NOT_FOUND, "App key does not exist")
        return key

    def connect(self, socket: Edge, admission: Any) -> None:
        self.connected.append(socket)
        # the transport reads only the app id (for the close-code counters)
        socket.session = SimpleNamespace(app=SimpleNamespace(id="1"))  # type: ignore[assignment]
        socket.send(text_frame(f'{{"hello":"{admission}"}}'))

    def receive(self, socket: Edge, text: str) -> None:
        self.received.append(text)
        socket.send(text_frame(text[::-1]))

    def disconnect(self, socket: Edge) -> None:
        self.disconnected += 1

    def fail(self, socket: Edge, code: int, message: str) -> None:
        socket.send(text_frame(f'{{"error":{code}}}'))
        socket.close(code, message)


async def answer(path: str) -> Response:
    return Response(200, f'{{"path":"{path}"}}'.encode())


async def handle(request: Request) -> Response:
    return await answer(request.path)


async def admin(request: Request) -> Response:
    return Response(200, b"admin " + request.path.encode(), "text/plain")


async def exchange(port: int, data: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        got = b""
        while until not in got:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            got += chunk
        return got
    finally:
        writer.close()


def masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


@pytest.mark.asyncio
async def test_two_listeners_serve_their_own_handlers() -> None:
    gateway = EchoGateway()
    public = Listener(LIMITS, handle, gateway)
    private = Listener(LIMITS, admin)
    await public.listen("127.0.0.1", 0)
    await private.listen("127.0.0.1", 0)
    public_port = public.sockets[0].getsockname()[1]
    private_port = private.sockets[0].getsockname()[1]
    try:
        got = await exchange(public_port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", b'"/x"}')
        assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b'{"path":"/x"}')
        got = await exchange(private_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"rics")
        assert b"Content-Type: text/plain" in got and got.endswith(b"admin /metrics")
        # no gateway: an upgrade is not found there
        got = await exchange(private_port, UPGRADE.format(key="good").encode(), b"}")
        assert got.startswith(b"HTTP/1.1 404 Not Found")
        # the gateway's WebSocket: admitted, then echoed
        got = await exchange(
            public_port, UPGRADE.format(key="good").encode() + masked_text("abc"), b"cba"
        )
        assert got.startswith(b"HTTP/1.1 101 Switching Protocols")
        assert b'{"hello":"good"}' in got and got.endswith(b"cba")
        assert gateway.received == ["abc"]
        # refused by admit: 101, then pusher:error and a close with its code
        got = await exchange(public_port, UPGRADE.format(key="bad").encode(), b"\x88")
        assert b"App key does not exist" in got and b"\x0f\xa1" in got  # 4001
        await asyncio.wait_for(until(lambda: gateway.disconnected == 1), 5)
    finally:
        public.abort_all()
        private.abort_all()
        public.stop_accepting()
        private.stop_accepting()


async def until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_drain_steps_close_websockets_with_the_gateway_and_refuse_new_ones() -> None:
    gateway = EchoGateway()
    listener = Listener(LIMITS, handle, gateway)
    await listener.listen("127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(UPGRADE.format(key="good").encode())
        await asyncio.wait_for(reader.readuntil(b'"good"}'), 5)
        listener.stop_accepting()
        listener.close_all(codes.RECONNECT_NOW, "Server is restarting")
        rest = await asyncio.wait_for(reader.readuntil(b"\x10\x68"), 5)  # close 4200
        assert rest.startswith(text_frame('{"error":4200}'))
        writer.write(bytes([0x88, 0x82]) + b"\0\0\0\0" + b"\x10\x68")  # the client's close
        # the close frame's reason, then the server ends the connection
        assert await asyncio.wait_for(reader.read(), 5) == b"Server is restarting"
        await asyncio.wait_for(listener.wait_closed(5), 6)
        assert not listener.connections
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    finally:
        writer.close()
        listener.abort_all()


@pytest.mark.asyncio
async def test_unready_at_the_node_wide_connection_limit() -> None:
    listener = Listener(LIMITS, handle, EchoGateway())
    assert listener.unready() == []
    listener.max_sockets = 20  # what the fd limit leaves: 4 WebSockets past the HTTP room
    listener.connections.update(object() for _ in range(4))  # type: ignore[misc]
    assert listener.unready() == ["at the node's connection limit (file descriptors)"]
