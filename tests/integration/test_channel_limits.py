"""One socket cannot hold unbounded channels, and ``GET /apps/{id}/channels`` answers a bounded
list (it once returned 1.6 MB for one socket's 100,000 channels, blocking the loop 0.85 s)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.support.rest import Rest
from tests.support.server import DEFAULT_APPS, run_server
from tests.support.wsclient import OP_TEXT, RawConn, encode_frame

CAPPED = DEFAULT_APPS[0]  # the default limits: 128 channels, 128 subscriptions a second
OPEN = {
    "id": "2001",
    "key": "open-key",
    "secret": "open-secret",
    "max_channels_per_connection": 0,
    "max_subscriptions_per_second": 0,
}
LIST_LIMIT = 1000


def subscribe_frames(names: list[str]) -> bytes:
    return b"".join(
        encode_frame(
            OP_TEXT, json.dumps({"event": "pusher:subscribe", "data": {"channel": n}}).encode()
        )
        for n in names
    )


async def subscribe_many(host: str, port: int, key: str, names: list[str]) -> list[dict[str, Any]]:
    """One raw socket subscribes to every name (frames written in one go), then reads the
    answers: one per subscription (counts and pings skipped)."""
    conn = await RawConn.open(host, port)
    try:
        assert await conn.handshake(host, port, f"/app/{key}?protocol=7") == 101
        await conn.read_frame()
        await conn.write(subscribe_frames(names))
        answers: list[dict[str, Any]] = []
        while len(answers) < len(names):
            _, payload = await conn.read_frame(timeout=20)
            frame = json.loads(payload)
            if frame["event"] in ("pusher_internal:subscription_count", "pusher:ping"):
                continue
            answers.append(frame)
        return answers
    finally:
        await conn.close()


def test_channels_per_connection_cap_and_channel_list_bound(tmp_path: Path) -> None:
    with run_server(tmp_path, apps=[CAPPED, OPEN]) as server:

        async def scenario() -> tuple[list[dict[str, Any]], tuple[int, Any]]:
            capped = [f"capped-{i}" for i in range(200)]
            answers = await subscribe_many(server.host, server.port, CAPPED["key"], capped)
            conn = await RawConn.open(server.host, server.port)
            names = [f"room-{i}" for i in range(3000)]
            # the open app's socket stays subscribed while the list is asked for
            assert await conn.handshake(server.host, server.port, f"/app/{OPEN['key']}") == 101
            await conn.read_frame()
            await conn.write(subscribe_frames(names))
            for _ in names:
                await conn.read_frame(timeout=20)
            rest = Rest(server.host, server.port, OPEN)
            try:
                listed = await asyncio.to_thread(
                    rest.request, "GET", f"/apps/{OPEN['id']}/channels"
                )
            finally:
                rest.close()
                await conn.close()
            return answers, listed

        answers, (status, body) = asyncio.run(scenario())
        ok = [a for a in answers if a["event"] == "pusher_internal:subscription_succeeded"]
        refused = [a for a in answers if a["event"] == "pusher:subscription_error"]
        print(
            f"one socket held {len(ok)} of 200 channels; GET /channels listed "
            f"{len(body['channels'])} of 3000"
        )
        assert len(ok) == 128 and len(refused) == 72
        assert refused[0]["data"]["type"] == "LimitReached"
        assert refused[0]["data"]["status"] == 4100
        assert status == 200
        assert len(body["channels"]) == LIST_LIMIT and body["truncated"] is True
        assert "Traceback" not in server.log()
