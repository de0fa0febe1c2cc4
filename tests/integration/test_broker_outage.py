"""Redis down while a node keeps publishing: nothing is lost silently.

Node A queues what it publishes for the other nodes while the link is down (10,000 frames).
When the queue is full, A drops the oldest frames, counts them and logs a warning with the
count, and answers HTTP publishes 503 with Retry-After (so the backend retries) instead of 200.
When Redis is back, every other node gets what A kept, in order: exactly the events answered
200 but for the oldest ones the log counted. ``GET /ready`` says the link is down once it has
been down longer than node_timeout.

The figures are printed (pytest -s) and quoted in docs/cluster.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster, run_cluster
from tests.support.rest import Rest
from tests.support.services import Service, redis_server
from tests.support.wsclient import PusherWS, pusher

CHANNEL = "feed"
CAPACITY = 10_000  # RedisBroker's outbox, in frames


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as service:
        yield service


def ready(cluster: Cluster, index: int) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"{cluster[index].http_url}/ready", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Publisher:
    """Numbered events on CHANNEL through one node, in batches; remembers which were taken."""

    def __init__(self, cluster: Cluster, index: int) -> None:
        node = cluster[index]
        self.rest = Rest(node.host, node.port, node.app, timeout=5)
        self.path = f"/apps/{node.app['id']}/batch_events"
        self.accepted: list[int] = []
        self.next = 0

    def batch(self, size: int) -> tuple[int, Any]:
        numbers = list(range(self.next, self.next + size))
        self.next += size
        batch = [{"channel": CHANNEL, "name": "e", "data": str(n)} for n in numbers]
        status, body = self.rest.request("POST", self.path, {"batch": batch})
        if status == 200:
            self.accepted.extend(numbers)
        return status, body

    def until_refused(self, most: int) -> tuple[int, Any]:
        """Batches of 10 until one is refused; one single event first, so that the queue
        overflows by one frame (and drops it) before it is found full."""
        status, body = self.batch(1)
        for _ in range(most):
            if status != 200:
                return status, body
            status, body = self.batch(10)
        raise AssertionError(f"still {status} after {most} batches")


@contextlib.asynccontextmanager
async def reading(client: PusherWS, into: list[int]) -> AsyncIterator[None]:
    """The numbers of the events on CHANNEL that ``client`` receives, in the background."""

    async def read() -> None:
        while True:
            frame = await client.recv_event(3600)
            if frame.get("channel") == CHANNEL and frame["event"] == "e":
                into.append(int(frame["raw_data"]))

    task = asyncio.create_task(read())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def dropped_so_far(log: str) -> int:
    counts = [int(n) for n in re.findall(r"dropped: the outbox is full.*\((\d+) in all\)", log)]
    return max(counts, default=0)


async def outage(cluster: Cluster, redis: Service, got: list[int]) -> dict[str, float]:
    """Redis stopped; node 1 publishes until refused; Redis started; returns the figures."""
    assert ready(cluster, 0) == (200, {"ready": True})
    redis.stop()
    down = time.monotonic()
    await asyncio.to_thread(
        cluster.wait_until,
        lambda: ready(cluster, 0),
        lambda answer: answer[0] == 503,
        10,
        "node 1 to say its link is down",
    )
    unready = time.monotonic() - down
    status, body = ready(cluster, 0)
    assert body["ready"] is False
    assert re.fullmatch(r"broker link down for \d+ s", body["reasons"][0]), body

    publisher = Publisher(cluster, 0)
    try:
        status, body = await asyncio.to_thread(publisher.until_refused, 1_200)
        assert status == 503, (status, body)
        assert body["code"] == 503 and "retry later" in body["error"], body
        assert publisher.rest.headers.get("Retry-After") == "2"
        assert await asyncio.to_thread(publisher.batch, 10) == (status, body)
        assert len(publisher.accepted) == CAPACITY + 1  # one more than it holds

        redis.start()
        back = time.monotonic()
        while (await asyncio.to_thread(publisher.batch, 10))[0] != 200:
            await asyncio.sleep(0.1)
        accepting = time.monotonic() - back
    finally:
        publisher.rest.close()
    await asyncio.to_thread(
        cluster.wait_until,
        lambda: ready(cluster, 0),
        lambda answer: answer == (200, {"ready": True}),
        5,
        "node 1 ready again",
    )

    accepted = publisher.accepted
    deadline = time.monotonic() + 15
    while (not got or got[-1] != accepted[-1]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    delivered = time.monotonic() - back
    # What is missing is the oldest, and the log counts it (at most every 5 s, the first at once)
    dropped = await asyncio.to_thread(
        cluster.wait_until,
        lambda: dropped_so_far(cluster[0].log()),
        lambda n: got == accepted[n:],
        10,
        "the log to count every event node 2 did not get",
    )
    assert dropped >= 1
    return {"unready": unready, "accepting": accepting, "delivered": delivered, "lost": dropped}


@pytest.mark.timeout(120)
def test_publishes_during_an_outage_are_kept_or_refused_never_lost_silently(
    tmp_path: Path, redis: Service
) -> None:
    env = {"RESSONANCE_NODE_TIMEOUT": "3"}
    with run_cluster(tmp_path, redis.url, size=2, env=env) as cluster:

        async def scenario() -> dict[str, float]:
            got: list[int] = []
            async with pusher(cluster[1]) as b:
                await b.subscribe_ok(CHANNEL)
                async with reading(b, got):
                    return await outage(cluster, redis, got)

        figures = asyncio.run(scenario())
        cluster.assert_no_traceback()
        log = cluster[0].log()
    assert "HTTP publishes are answered 503" in log
    assert re.search(r"HTTP publishes accepted again \(\d+ refused\)", log)
    print(
        f"\nredis down: /ready 503 after {figures['unready']:.1f} s; outbox full after "
        f"{CAPACITY} frames, then 503; after the restart, publishes accepted in "
        f"{figures['accepting']:.1f} s, the kept events delivered within "
        f"{figures['delivered']:.1f} s; {figures['lost']:.0f} oldest dropped and logged"
    )
