"""A cluster when things fail: a node killed without a goodbye (its presence members must not stay
as ghosts) and Redis going away and coming back on the same port (local sockets keep working,
cross-node delivery resumes; the same with NATS). Each test has its own broker and nodes.

The measured figures are printed (run pytest with ``-s``) and quoted in docs/cluster.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, run_cluster
from tests.support.server import DEFAULT_APPS
from tests.support.services import Service, redis_server
from tests.support.wsclient import PusherWS, RawConn, pusher

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as service:
        yield service


async def until(fn: object, *args: object) -> object:
    assert callable(fn)
    return await asyncio.to_thread(fn, *args)


async def ghost_removed_after_kill(cluster: Cluster, room: str, limit: float) -> float:
    """n3 holds ``ghost``, n1 ``watcher``; SIGKILL n3: seconds until the watcher hears
    ``member_removed`` for the ghost (at most ``limit``)."""
    async with pusher(cluster[0]) as watcher, pusher(cluster[2]) as ghost:
        await ghost.subscribe_presence(room, "ghost")
        await watcher.subscribe_presence(room, "watcher")
        for index in (0, 1):
            await until(cluster.wait_users, index, room, ["ghost", "watcher"])
        started = time.monotonic()
        cluster.kill(2)
        removed = await watcher.expect(
            "pusher_internal:member_removed", limit, room, skip_others=True
        )
        seconds = time.monotonic() - started
        assert removed["data"] == {"user_id": "ghost"}
        await until(cluster.wait_users, 1, room, ["watcher"])
        await until(cluster.wait_count, 1, room, 1)
        assert await watcher.is_open()
    return seconds


def test_a_killed_node_leaves_no_ghost_members(tmp_path: Path, redis: Service) -> None:
    with run_cluster(tmp_path, redis.url) as cluster:
        seconds = asyncio.run(ghost_removed_after_kill(cluster, "presence-ghosts", 15))
        cluster.assert_no_traceback()
    print(f"\nSIGKILL, node_timeout 10 s (default): member_removed after {seconds:.1f} s")
    assert seconds <= 15


def test_a_shorter_node_timeout_removes_ghosts_sooner(tmp_path: Path, redis: Service) -> None:
    env = {"RESSONANCE_NODE_TIMEOUT": "3"}  # the lowest allowed
    with run_cluster(tmp_path, redis.url, env=env) as cluster:
        seconds = asyncio.run(ghost_removed_after_kill(cluster, "presence-ghosts", 7))
        cluster.assert_no_traceback()
    print(f"\nSIGKILL, node_timeout 3 s: member_removed after {seconds:.1f} s")
    assert seconds <= 5


async def first_event(client: PusherWS, channel: str, prefix: str, timeout: float) -> str:
    """The name of the first event on ``channel`` whose name starts with ``prefix``; no member
    may be removed meanwhile (the outage must not drop the other node's members)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.recv_event(timeout)
            assert frame["event"] != "pusher_internal:member_removed", frame
            if frame.get("channel") == channel and frame["event"].startswith(prefix):
                return str(frame["event"])


async def publish_until_stopped(cluster: Cluster, index: int, channel: str, prefix: str) -> None:
    """Publish ``{prefix}{n}`` through node ``index`` every 50 ms until cancelled."""
    n = 0
    while True:
        with contextlib.suppress(OSError, AssertionError):
            await asyncio.to_thread(cluster.trigger, index, channel, f"{prefix}{n}", {})
        n += 1
        await asyncio.sleep(0.05)


def test_broker_outage_keeps_local_sockets_served_and_cross_node_delivery_resumes(
    tmp_path: Path, engine: Service
) -> None:
    """Redis (or NATS) stopped for a few seconds, then started again on the same port."""
    channel, room = "prices", "presence-desk"
    outage = 3.0
    name = engine.url.split(":", 1)[0]

    async def scenario(cluster: Cluster) -> float:
        async with pusher(cluster[0]) as a, pusher(cluster[1]) as b:
            await a.subscribe_ok(channel)
            await b.subscribe_ok(channel)
            await a.subscribe_presence(room, "alice")
            await b.subscribe_presence(room, "bob")
            await until(cluster.wait_users, 1, room, ["alice", "bob"])
            await until(cluster.wait_count, 1, channel, 2)

            engine.stop()
            deadline = time.monotonic() + outage
            # Each node still serves its own sockets: a publish reaches the local subscribers.
            await until(cluster.trigger, 0, channel, "local-a", {})
            assert await first_event(a, channel, "local-", 5) == "local-a"
            await until(cluster.trigger, 1, channel, "local-b", {})
            assert await first_event(b, channel, "local-", 5) == "local-b"
            async with pusher(cluster[1]) as newcomer:
                await newcomer.subscribe_ok(channel)
                assert await newcomer.is_open()
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))

            engine.start()
            back = time.monotonic()
            publisher = asyncio.create_task(publish_until_stopped(cluster, 0, channel, "after-"))
            try:
                await first_event(b, channel, "after-", 15)
            finally:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher
            seconds = time.monotonic() - back

            # Both directions, and the cluster view is whole again: alice was never dropped.
            await until(cluster.trigger, 1, channel, "reverse", {})
            assert await first_event(a, channel, "reverse", 5) == "reverse"
            for index in (0, 1):
                await until(cluster.wait_users, index, room, ["alice", "bob"])
            return seconds

    with run_cluster(tmp_path, engine.url, size=2) as cluster:
        seconds = asyncio.run(scenario(cluster))
        cluster.assert_no_traceback()
    print(f"\n{name} down {outage:.0f} s, then back: first cross-node event after {seconds:.2f} s")
    assert seconds <= 5


def test_a_draining_nodes_clients_are_not_counted_twice_when_they_reconnect(
    tmp_path: Path, redis: Service
) -> None:
    """A rolling deploy of an app near its max_connections: the clients a draining node closes
    with 4200 reconnect to another node at once and must be admitted (not refused with 4004,
    which pusher-js does not retry), so the draining node tells the others it let them go
    before its drain ends (which a client that does not answer the close holds up)."""
    app = {**DEFAULT_APPS[0], "max_connections": 6}
    with run_cluster(tmp_path, redis.url, size=2, apps=[app]) as cluster:

        async def scenario() -> list[str]:
            async with contextlib.AsyncExitStack() as stack:
                leaving = [await stack.enter_async_context(pusher(cluster[0])) for _ in range(3)]
                # a client that never answers the close keeps the drain going (as real ones do)
                stuck = await RawConn.open(cluster[0].host, cluster[0].port)
                stack.push_async_callback(stuck.close)
                path = f"/app/{app['key']}?protocol=7"
                assert await stuck.handshake(cluster[0].host, cluster[0].port, path) == 101
                for _ in range(2):
                    await stack.enter_async_context(pusher(cluster[1]))
                await asyncio.sleep(2.5)  # two heartbeats: each node knows the other's count
                cluster[0].process.send_signal(signal.SIGTERM)  # not terminate(): no waiting
                outcomes = []
                for client in leaving:  # reconnect at once, as pusher-js does after a 4200
                    error = await client.expect("pusher:error", 5)
                    assert error["data"]["code"] == 4200
                    try:
                        again = await stack.enter_async_context(pusher(cluster[1]))
                        outcomes.append("admitted" if await again.is_open(0.5) else "closed")
                    except Exception as exc:  # a refusal is the outcome here
                        outcomes.append(f"refused: {exc!r}"[:200])
                return outcomes

        outcomes = asyncio.run(scenario())
        assert cluster[0].process.wait(timeout=15) == 0
    assert outcomes == ["admitted"] * 3, outcomes
