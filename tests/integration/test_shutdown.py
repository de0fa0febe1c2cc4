"""SIGTERM drains: every WebSocket gets pusher:error 4200 and a close with 4200 (reconnect now,
PROTOCOL.md Part B item 2), and the process exits 0."""

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
