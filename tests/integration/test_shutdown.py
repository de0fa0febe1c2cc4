"""SIGTERM drains: every WebSocket gets pusher:error 4200 and a close with 4200 (reconnect now,
docs/protocol.md, "Close codes"), and the process exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.server import run_server


def test_sigterm_closes_sockets_with_4200(tmp_path: Path) -> None:
    with run_server(tmp_path) as server:

        async def scenario() -> tuple[dict[str, object], int | None]:
            async with connect(server.ws_url()) as ws:
                await ws.recv()
                server.process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(10):
                    error = json.loads(await ws.recv())
                    try:
                        await ws.recv()
                    except ConnectionClosed as closed:
                        return error, closed.rcvd.code if closed.rcvd else None
            raise AssertionError("the connection was not closed")

        error, code = asyncio.run(scenario())
        assert error["event"] == "pusher:error"
        assert error["data"] == {"code": 4200, "message": "Server is restarting"}
        assert code == 4200
        assert server.process.wait(timeout=15) == 0


def test_sigterm_closes_idle_keep_alive_http_connections_at_once(tmp_path: Path) -> None:
    """A load balancer's kept-alive upstream connection must not hold the drain for its whole
    timeout, nor be handed a 503 later: it is closed when the drain starts."""
    with run_server(tmp_path) as server:

        async def scenario() -> tuple[bytes, float]:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            loop = asyncio.get_running_loop()
            server.process.send_signal(signal.SIGTERM)
            started = loop.time()
            async with asyncio.timeout(5):
                rest = await reader.read()  # b"" once the server closes its end
                while rest:
                    rest = await reader.read()
            writer.close()
            return head, loop.time() - started

        head, seconds = asyncio.run(scenario())
        assert head.startswith(b"HTTP/1.1 200")
        assert seconds < 3, f"idle keep-alive connection closed only after {seconds:.1f}s"
        assert server.process.wait(timeout=15) == 0


def test_a_request_arriving_when_the_drain_starts_is_still_answered(tmp_path: Path) -> None:
    """Headers sent, body still coming when SIGTERM arrives: the request is completed and
    answered (with Connection: close), not cut off (nginx does not retry a POST)."""
    with run_server(tmp_path) as server:

        async def scenario() -> bytes:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            body = b'{"name":"e","channel":"c","data":"x"}'
            writer.write(
                b"POST /apps/1001/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:10]
            )
            await writer.drain()
            await asyncio.sleep(0.2)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)  # the drain has begun
            writer.write(body[10:])
            await writer.drain()
            async with asyncio.timeout(5):
                response = await reader.read()
            writer.close()
            return response

        response = asyncio.run(scenario())
        assert response.startswith(b"HTTP/1.1 401"), response[:200]  # unsigned: but answered
        assert b"Connection: close" in response
        assert server.process.wait(timeout=15) == 0
