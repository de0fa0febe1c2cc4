"""A small Pusher protocol client for the integration tests (the Pusher Channels WebSocket
protocol: https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/).

``PusherWS`` wraps a real ``websockets`` client connection; ``RawConn`` speaks bytes over a
plain TCP stream for the inputs a well-behaved client library refuses to produce (invalid
UTF-8, hand-made handshakes, garbage). Every wait is bounded with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import struct
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DEFAULT_QUERY = "protocol=7&client=js&version=8.4.0&flash=false"
# Events that may arrive at any time and that ``expect`` steps over.
BACKGROUND = frozenset({"pusher:ping", "pusher_internal:subscription_count"})


def sign(secret: str, string_to_sign: str) -> str:
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def channel_auth(
    app: dict[str, Any], socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """``key:hex(HMAC_SHA256(secret, socket_id:channel[:channel_data]))``
    (docs/protocol.md, "Signatures")."""
    to_sign = (
        f"{socket_id}:{channel}"
        if channel_data is None
        else f"{socket_id}:{channel}:{channel_data}"
    )
    return f"{app['key']}:{sign(app['secret'], to_sign)}"


def user_auth(app: dict[str, Any], socket_id: str, user_data: str) -> str:
    """``key:hex(HMAC_SHA256(secret, socket_id::user::user_data))``
    (docs/protocol.md, "Signatures")."""
    return f"{app['key']}:{sign(app['secret'], f'{socket_id}::user::{user_data}')}"


def decode(raw: str | bytes) -> dict[str, Any]:
    """Parse a server frame; a JSON-string ``data`` is decoded too (double encoding:
    docs/protocol.md, "Frames and encoding")."""
    frame: dict[str, Any] = json.loads(raw)
    data = frame.get("data")
    if isinstance(data, str):
        with contextlib.suppress(ValueError):
            frame["data"] = json.loads(data)
        frame["raw_data"] = data
    return frame


class Closed(Exception):
    """The server closed the socket while we were waiting for a frame."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


class PusherWS:
    """One Pusher client connection."""

    def __init__(self, ws: ClientConnection, app: dict[str, Any]) -> None:
        self.ws = ws
        self.app = app
        self.socket_id = ""
        self.activity_timeout: int | None = None
        self.established: dict[str, Any] = {}

    # -- sending ------------------------------------------------------------------------------
    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"event": event}
        if data is not None:
            frame["data"] = data
        if channel is not None:
            frame["channel"] = channel
        await self.send_raw(json.dumps(frame))

    async def send_raw(self, message: str | bytes) -> None:
        async with asyncio.timeout(5):
            await self.ws.send(message)

    # -- receiving ----------------------------------------------------------------------------
    async def recv_event(self, timeout: float = 5) -> dict[str, Any]:
        """The next frame, parsed; raises :class:`Closed` if the server closed the socket."""
        try:
            async with asyncio.timeout(timeout):
                raw = await self.ws.recv()
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from exc
        return decode(raw)

    async def expect(
        self,
        event: str,
        timeout: float = 5,
        channel: str | None = None,
        skip_others: bool = False,
    ) -> dict[str, Any]:
        """Wait for ``event`` (on ``channel``), stepping over pings and subscription counts.

        Any other frame fails the test unless ``skip_others``.
        """
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv_event(timeout)
                if frame.get("event") == event and (
                    channel is None or frame.get("channel") == channel
                ):
                    return frame
                if frame.get("event") in BACKGROUND or skip_others:
                    continue
                raise AssertionError(f"expected {event} on {channel}, got {frame}")

    async def expect_nothing(self, timeout: float = 0.5, event: str | None = None) -> None:
        """No frame (or no ``event`` frame) within ``timeout``; background frames are fine."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                frame = await self.recv_event(left)
            except TimeoutError:
                return
            if frame.get("event") in BACKGROUND:
                continue
            if event is None or frame.get("event") == event:
                raise AssertionError(f"expected no frame, got {frame}")

    async def expect_close(
        self, timeout: float = 5
    ) -> tuple[int | None, str, list[dict[str, Any]]]:
        """Read until the server closes; returns (code, reason, frames seen before the close)."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    seen.append(await self.recv_event(timeout))
                except Closed as closed:
                    return closed.code, closed.reason, seen

    async def is_open(self, timeout: float = 5) -> bool:
        """A ``pusher:ping`` round trip works (the socket is open and served)."""
        try:
            await self.send("pusher:ping", {})
            await self.expect("pusher:pong", timeout, skip_others=True)
        except (Closed, ConnectionClosed):
            return False
        return True

    # -- subscriptions ------------------------------------------------------------------------
    async def subscribe(
        self, channel: str, auth: str | None = None, channel_data: str | None = None
    ) -> None:
        data: dict[str, Any] = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        await self.send("pusher:subscribe", data)

    async def subscribe_ok(self, channel: str, timeout: float = 5) -> dict[str, Any]:
        """Subscribe to a public channel and wait for ``subscription_succeeded``."""
        await self.subscribe(channel)
        return await self.expect("pusher_internal:subscription_succeeded", timeout, channel)

    async def subscribe_private(self, channel: str, timeout: float = 5) -> dict[str, Any]:
        await self.subscribe(channel, channel_auth(self.app, self.socket_id, channel))
        return await self.expect("pusher_internal:subscription_succeeded", timeout, channel)

    async def subscribe_presence(
        self, channel: str, user_id: str, user_info: Any = None, timeout: float = 5
    ) -> dict[str, Any]:
        member: dict[str, Any] = {"user_id": user_id}
        if user_info is not None:
            member["user_info"] = user_info
        channel_data = json.dumps(member)
        await self.subscribe(
            channel, channel_auth(self.app, self.socket_id, channel, channel_data), channel_data
        )
        return await self.expect("pusher_internal:subscription_succeeded", timeout, channel)

    async def signin(self, user_id: str, timeout: float = 5, **extra: Any) -> dict[str, Any]:
        user_data = json.dumps({"id": user_id, **extra})
        await self.send(
            "pusher:signin",
            {"auth": user_auth(self.app, self.socket_id, user_data), "user_data": user_data},
        )
        return await self.expect("pusher:signin_success", timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.ws.close()


@contextlib.asynccontextmanager
async def open_ws(
    url: str, app: dict[str, Any], established: bool = True, timeout: float = 5, **kwargs: Any
) -> AsyncIterator[PusherWS]:
    """Connect to ``url``; with ``established`` read ``pusher:connection_established`` first."""
    async with asyncio.timeout(timeout):
        kwargs.setdefault("ping_interval", None)  # a silent client unless the test pings
        ws = await connect(url, open_timeout=timeout, close_timeout=2, **kwargs)
    client = PusherWS(ws, app)
    try:
        if established:
            frame = await client.expect("pusher:connection_established", timeout)
            client.established = frame["data"]
            client.socket_id = frame["data"]["socket_id"]
            client.activity_timeout = frame["data"]["activity_timeout"]
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def pusher(
    server: Any, app: dict[str, Any] | None = None, query: str = DEFAULT_QUERY, **kw: Any
) -> AsyncIterator[PusherWS]:
    """An established connection to ``app`` (default: the server's first app)."""
    app = app or server.app
    async with open_ws(server.ws_url(app["key"], query), app, **kw) as client:
        yield client


# -- raw bytes ------------------------------------------------------------------------------------
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def encode_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    """One WebSocket frame (RFC 6455 §5.2); clients must mask."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 65536:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def upgrade_request(
    host: str, port: int, path: str, headers: dict[str, str] | None = None
) -> bytes:
    fields = {
        "Host": f"{host}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update(headers or {})
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items() if v is not None)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawConn:
    """A TCP stream to the server, for hand-made HTTP and WebSocket bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, timeout: float = 5) -> RawConn:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(5):
            await self.writer.drain()

    async def read_http_head(self, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-cased) and whatever body bytes came with the head."""
        async with asyncio.timeout(timeout):
            head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return status, headers, b""

    async def read_body(self, headers: dict[str, str], timeout: float = 5) -> bytes:
        async with asyncio.timeout(timeout):
            if "content-length" in headers:
                return await self.reader.readexactly(int(headers["content-length"]))
            return await self.reader.read(65536)

    async def handshake(
        self, host: str, port: int, path: str, headers: dict[str, str] | None = None
    ) -> int:
        await self.write(upgrade_request(host, port, path, headers))
        status, _, _ = await self.read_http_head()
        return status

    async def read_frame(self, timeout: float = 5) -> tuple[int, bytes]:
        """(opcode, payload) of the next unmasked server frame."""
        async with asyncio.timeout(timeout):
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(n)

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        await self.write(encode_frame(opcode, payload))

    async def read_until_close(
        self, timeout: float = 5
    ) -> tuple[int | None, str, list[tuple[int, bytes]]]:
        """Frames up to the server's close frame; (close code, reason, frames before it)."""
        seen: list[tuple[int, bytes]] = []
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.read_frame(timeout)
                if opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    return code, payload[2:].decode("utf-8", "replace"), seen
                seen.append((opcode, payload))

    async def closed_by_peer(self, timeout: float = 5) -> bool:
        """The server ends the stream (EOF or reset) within ``timeout``; data is skipped."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except OSError:
            return True
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.writer.wait_closed()


# -- server health --------------------------------------------------------------------------------
def health_status(server: Any, timeout: float = 5) -> int:
    with urllib.request.urlopen(f"{server.http_url}/health", timeout=timeout) as resp:
        return int(resp.status)


async def assert_alive(server: Any) -> None:
    """GET /health is 200, a fresh connection is established and served, no traceback logged."""
    assert await asyncio.to_thread(health_status, server) == 200
    async with pusher(server) as fresh:
        assert fresh.socket_id
        assert await fresh.is_open()
    assert "Traceback" not in server.log()
