"""A disconnect storm must not freeze the server: thousands of signed-in sockets with full
watchlists dropping at once, while ``GET /health`` keeps answering (peers declare a node dead
after ``node_timeout`` seconds of silence)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path

from tests.support.server import DEFAULT_APPS, run_server
from tests.support.wsclient import OP_TEXT, RawConn, user_auth

APP = DEFAULT_APPS[0]
SOCKETS = 2000
WATCHLIST = 100


async def signed_in(host: str, port: int, i: int, gate: asyncio.Semaphore) -> RawConn:
    """A raw WebSocket signed in as user ``u{i}`` watching 100 ids nobody else watches."""
    async with gate:
        conn = await RawConn.open(host, port)
        assert await conn.handshake(host, port, f"/app/{APP['key']}?protocol=7") == 101
        _, payload = await conn.read_frame()
        socket_id = json.loads(json.loads(payload)["data"])["socket_id"]
        user_data = json.dumps({"id": f"u{i}", "watchlist": [f"w{i}-{j}" for j in range(100)]})
        data = {"auth": user_auth(APP, socket_id, user_data), "user_data": user_data}
        await conn.send_frame(
            OP_TEXT, json.dumps({"event": "pusher:signin", "data": data}).encode()
        )
        event = "pusher:ping"
        while event == "pusher:ping":  # a ping may come first on a loaded machine
            _, payload = await conn.read_frame(timeout=20)
            event = json.loads(payload)["event"]
        assert event == "pusher:signin_success"
        return conn


def probe_health(url: str, stop: threading.Event, latencies: list[float]) -> None:
    """GET /health in a loop until ``stop``; a request that fails counts as its timeout."""
    while not stop.is_set():
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                resp.read()
        except OSError:
            pass
        latencies.append(time.monotonic() - start)
        time.sleep(0.02)


def test_health_answers_while_signed_in_sockets_leave(tmp_path: Path) -> None:
    with run_server(tmp_path, apps=[APP]) as server:

        async def scenario() -> list[float]:
            gate = asyncio.Semaphore(100)
            conns = await asyncio.gather(
                *(signed_in(server.host, server.port, i, gate) for i in range(SOCKETS))
            )
            stop, latencies = threading.Event(), []
            probe = threading.Thread(
                target=probe_health, args=(f"{server.http_url}/health", stop, latencies)
            )
            probe.start()
            await asyncio.sleep(0.3)
            for conn in conns:  # all at once: a reset per socket, the server tears all down
                conn.writer.transport.abort()
            await asyncio.sleep(4)
            await asyncio.gather(*(conn.close() for conn in conns))
            stop.set()
            await asyncio.to_thread(probe.join, 15)
            return latencies

        latencies = asyncio.run(scenario())
        worst = max(latencies)
        print(f"/health during the storm: {len(latencies)} probes, worst {worst * 1e3:.0f} ms")
        assert worst < 1.0, f"/health took {worst:.2f} s while {SOCKETS} sockets left"
        assert "Traceback" not in server.log()
