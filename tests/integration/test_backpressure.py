"""A client that stops reading must not grow the server's memory or slow the others
(ARCHITECTURE.md "Backpressure"): it is closed with 4100, or its frames are dropped."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.support.rest import Rest
from tests.support.server import DEFAULT_APPS, run_server

APP = DEFAULT_APPS[0]
EVENTS = 600
DATA = "x" * 9000  # 600 x 9 KB = 5.4 MB, far over the 64 KB write buffer and the kernel's


def stalled_subscriber(host: str, port: int, channel: str) -> socket.socket:
    """A raw WebSocket client that subscribes and then never reads again."""
    sock = socket.create_connection((host, port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /app/{APP['key']}?protocol=7 HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    seen = b""
    while b"connection_established" not in seen:
        seen += sock.recv(4096)
    payload = json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


async def count_events(url: str, channel: str, want: int) -> int:
    got = 0
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
        async with asyncio.timeout(30):
            while got < want:
                frame = json.loads(await ws.recv())
                if frame["event"] == "flood":
                    got += 1
    return got


@pytest.mark.parametrize("policy", ["close", "drop"])
def test_slow_consumer_is_bounded_and_others_get_everything(tmp_path: Path, policy: str) -> None:
    settings = {"write_buffer_kb": 64, "slow_consumer": policy}
    with run_server(tmp_path, settings=settings) as server:
        stalled = stalled_subscriber(server.host, server.port, "flood")
        rest = Rest(server.host, server.port, APP)

        async def scenario() -> int:
            reader = asyncio.create_task(count_events(server.ws_url(), "flood", EVENTS))
            await asyncio.sleep(0.5)  # the reader subscribes
            for i in range(0, EVENTS, 10):
                batch = [{"name": "flood", "channel": "flood", "data": DATA} for _ in range(10)]
                status, _ = await asyncio.to_thread(
                    rest.request, "POST", f"/apps/{APP['id']}/batch_events", {"batch": batch}
                )
                assert status == 200, i
            return await reader

        try:
            assert asyncio.run(scenario()) == EVENTS
            status, info = rest.channel_info("flood")
            assert status == 200
            if policy == "close":
                assert info["subscription_count"] == 0  # the stalled socket was closed
            else:
                # dropped, not closed: it is still subscribed and the server is fine
                assert info["subscription_count"] == 1
        finally:
            stalled.close()
            rest.close()
        assert "Traceback" not in server.log()
