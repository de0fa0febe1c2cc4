"""Webhooks of a 3-node cluster on a private redis-server (docs/webhooks.md, "Cluster-wide
truth" and "Durable"): each event once for the whole cluster, whichever node the sockets are on;
a user's tabs on two nodes are one member; a reload sends nothing; a node killed with SIGKILL has
its users and channels ended by a survivor; the leader killed while the receiver is down loses
no job (the next leader claims the Redis stream's pending entries). Every POST is validated with
the Pusher Python SDK and the Node SDK.

The nodes are ``n1``..``n3``: ``n1`` is the leader (the smallest id). ``node_timeout`` is 3 s
(the lowest allowed). The webhook only takes channels ending in ``-wh`` so that the probe
channels of :func:`~tests.support.cluster.run_cluster` send nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pusher as pusher_sdk
import pytest
import redis

from ressonance.models import WEBHOOK_EVENTS
from tests.e2e.node_runner import LiveScenario
from tests.support.cluster import Cluster, run_cluster
from tests.support.receiver import Receiver
from tests.support.services import Service, redis_server
from tests.support.webhook_checks import count_on, events_of, names_on, unique_by_id, until
from tests.support.webhook_checks import validate as validate_both
from tests.support.wsclient import pusher

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

APP = {"id": "1001", "key": "cluster-hook-key", "secret": "cluster-hook-secret"}
EVENTS = [e for e in WEBHOOK_EVENTS if e != "subscription_count"]
NODE_TIMEOUT = 3
DELAY = 3.0  # channel_vacated / member_removed wait this long for a comeback
QUIET = 3.0  # a starting node of a cluster sends no occupied/added this long
MARGIN = 3.0
ENV = {"RESSONANCE_NODE_TIMEOUT": str(NODE_TIMEOUT)}


@pytest.fixture
def redis_service(tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as service:
        yield service


def app_for(receiver: Receiver, *also: dict[str, Any]) -> dict[str, Any]:
    hook = {"url": receiver.url, "event_types": EVENTS, "filter": {"channel_name_ends_with": "-wh"}}
    return {**APP, "webhooks": [hook, *also]}


@contextlib.asynccontextmanager
async def cluster_for(tmp_path: Path, broker: str, app: dict[str, Any]) -> AsyncIterator[Cluster]:
    """Three nodes, past their quiet start; no traceback in any log at the end."""
    with run_cluster(tmp_path, broker, apps=[app], env=ENV) as cluster:
        await asyncio.sleep(QUIET + 0.5)
        yield cluster
        cluster.assert_no_traceback()


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_channel_occupied_and_vacated_once_for_the_whole_cluster(
    tmp_path: Path, receiver: Receiver, redis_service: Service
) -> None:
    channel = "news-wh"
    async with cluster_for(tmp_path, redis_service.url, app_for(receiver)) as cluster:
        async with pusher(cluster[2]) as bob:
            async with pusher(cluster[1]) as alice:
                await alice.subscribe_ok(channel)  # the first anywhere, on a node that is not n1
                await until(lambda: "channel_occupied" in names_on(receiver, channel), 5, "occ.")
                await bob.subscribe_ok(channel)
                await in_thread(cluster.wait_count, 0, channel, 2)
            await in_thread(cluster.wait_count, 0, channel, 1)  # one left, one stays
            await asyncio.sleep(DELAY + 1.5)
            assert names_on(receiver, channel) == ["channel_occupied"]
        # bob was the last one anywhere
        started = time.monotonic()
        await until(lambda: "channel_vacated" in names_on(receiver, channel), 8, "vacated")
        waited = time.monotonic() - started
        await asyncio.sleep(DELAY + 1.0)  # a duplicate from another node would come now
    assert DELAY - 0.5 <= waited <= DELAY + MARGIN, waited
    assert names_on(receiver, channel) == ["channel_occupied", "channel_vacated"]
    validate_both(APP, receiver)


async def test_a_user_with_tabs_on_two_nodes_is_one_member(
    tmp_path: Path, receiver: Receiver, redis_service: Service
) -> None:
    room = "presence-room-wh"
    async with cluster_for(tmp_path, redis_service.url, app_for(receiver)) as cluster:
        async with pusher(cluster[2]) as tab2:
            async with pusher(cluster[1]) as tab1:
                await tab1.subscribe_presence(room, "carol")
                await until(lambda: "member_added" in names_on(receiver, room), 5, "added")
                await tab2.subscribe_presence(room, "carol")
                await in_thread(cluster.wait_count, 0, room, 2)
            await in_thread(cluster.wait_count, 0, room, 1)  # one tab closed, one open
            await asyncio.sleep(DELAY + 1.5)
            assert count_on(receiver, room) == {"channel_occupied": 1, "member_added": 1}
        await until(lambda: "member_removed" in names_on(receiver, room), 8, "removed")
        await until(lambda: "channel_vacated" in names_on(receiver, room), 3, "vacated")
        await asyncio.sleep(DELAY + 1.0)
    events = events_of(receiver.requests, room)
    assert count_on(receiver, room) == {
        "channel_occupied": 1,
        "member_added": 1,
        "member_removed": 1,
        "channel_vacated": 1,
    }, events
    assert {"name": "member_added", "channel": room, "user_id": "carol"} in events
    assert {"name": "member_removed", "channel": room, "user_id": "carol"} in events
    # Pusher's order, as a single node sends it: the channel is occupied, then the member joins
    # (the first tab is on n2, not on the leader)
    assert [e["name"] for e in events] == [
        "channel_occupied",
        "member_added",
        "member_removed",
        "channel_vacated",
    ], events
    validate_both(APP, receiver)


async def test_a_reload_onto_another_node_within_three_seconds_sends_nothing(
    tmp_path: Path, receiver: Receiver, redis_service: Service
) -> None:
    room, news = "presence-reload-wh", "reload-wh"
    async with cluster_for(tmp_path, redis_service.url, app_for(receiver)) as cluster:
        async with pusher(cluster[1]) as page:
            await page.subscribe_presence(room, "dave")
            await page.subscribe_ok(news)
            await until(lambda: len(events_of(receiver.requests)) >= 3, 5, "three events")
        await asyncio.sleep(0.5)  # the page reloads onto another node within 1 s
        async with pusher(cluster[2]) as reloaded:
            await reloaded.subscribe_presence(room, "dave")
            await reloaded.subscribe_ok(news)
            await asyncio.sleep(DELAY + 2.0)
            assert count_on(receiver, room) == {"channel_occupied": 1, "member_added": 1}
            assert names_on(receiver, news) == ["channel_occupied"]
    validate_both(APP, receiver)


async def test_a_killed_node_has_its_member_and_channel_ended_by_a_survivor(
    tmp_path: Path, receiver: Receiver, redis_service: Service
) -> None:
    room, lonely = "presence-ghosts-wh", "lonely-wh"
    async with cluster_for(tmp_path, redis_service.url, app_for(receiver)) as cluster:
        async with pusher(cluster[1]) as watcher, pusher(cluster[2]) as ghost:
            await watcher.subscribe_presence(room, "watcher")
            await ghost.subscribe_ok(lonely)  # its only subscriber in the cluster
            await ghost.subscribe_presence(room, "ghost")
            await in_thread(cluster.wait_users, 0, room, ["ghost", "watcher"])
            await until(lambda: len(events_of(receiver.requests)) >= 4, 5, "four events")
            started = time.monotonic()
            cluster.kill(2)  # SIGKILL n3, not the leader: no goodbye
            limit = NODE_TIMEOUT + DELAY + MARGIN
            await until(lambda: "member_removed" in names_on(receiver, room), limit, "removed")
            removed_after = time.monotonic() - started
            await until(lambda: "channel_vacated" in names_on(receiver, lonely), 2, "vacated")
            vacated_after = time.monotonic() - started
            await asyncio.sleep(DELAY + 1.0)
            assert await watcher.is_open()
        assert cluster[0].process.poll() is None and cluster[1].process.poll() is None
    print(f"\nSIGKILL n3: member_removed after {removed_after:.1f} s, vacated {vacated_after:.1f}")
    assert count_on(receiver, room) == {
        "channel_occupied": 1,
        "member_added": 2,
        "member_removed": 1,
    }
    assert count_on(receiver, lonely) == {"channel_occupied": 1, "channel_vacated": 1}
    removed = [e for e in events_of(receiver.requests, room) if e["name"] == "member_removed"]
    assert removed == [{"name": "member_removed", "channel": room, "user_id": "ghost"}]
    validate_both(APP, receiver)


def pending_per_consumer(url: str) -> dict[str, int]:
    """The webhook events of the stream's pending entries (chunks) per consumer (XPENDING,
    XRANGE for each chunk's size), read from the broker."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        (stream,) = [k for k in client.scan_iter(match="*webhooks:jobs") if k]
        summary = client.xpending(stream, "webhooks")
        events: dict[str, int] = {}
        for consumer in summary["consumers"]:
            name = consumer["name"].decode()
            for entry in client.xpending_range(stream, "webhooks", "-", "+", 1000, name):
                ((_, fields),) = client.xrange(stream, entry["message_id"], entry["message_id"])
                events[name] = events.get(name, 0) + int(fields[b"size"])
        return events
    finally:
        client.close()


async def test_the_leader_killed_while_the_receiver_is_down_loses_no_webhook(
    tmp_path: Path, receiver: Receiver, redis_service: Service
) -> None:
    """Events pending for n1 in the Redis stream (in chunks) when n1 dies are claimed by n2,
    the next leader, and delivered once the receiver is back on the same port."""
    orders, desk = "orders-wh", "presence-desk-wh"
    port = receiver.port
    app = app_for(receiver)
    await receiver.close()  # down: connection refused
    async with cluster_for(tmp_path, redis_service.url, app) as cluster:
        async with pusher(cluster[1]) as a, pusher(cluster[2]) as b:
            await a.subscribe_ok(orders)
            await b.subscribe_presence(desk, "eve")
            await in_thread(cluster.wait_users, 0, desk, ["eve"])
        # vacated and removed fire after 3 s; then n2 forgets the events it held back in case
        # n1 died without sending them (node_timeout + 3 + 2 s): only the stream's jobs remain.
        await asyncio.sleep(DELAY + NODE_TIMEOUT + DELAY + 2.0 + 1.5)
        pending = await in_thread(pending_per_consumer, redis_service.url)
        assert pending == {"n1": 6}, pending  # 2 on orders, 4 on desk, all taken by n1
        cluster.kill(0)  # SIGKILL the leader while it is retrying them
        await asyncio.sleep(NODE_TIMEOUT + 1.0)  # n2 takes over meanwhile
        receiver.port = port
        await receiver.start()
        await until(lambda: len(unique_by_id(receiver.requests)) >= 6, 70, "six jobs")
        await asyncio.sleep(2.0)  # a duplicate would come now
        assert cluster[1].process.poll() is None
        assert "this node is the webhook leader" in cluster[1].log()  # n2 took over
        pending = await in_thread(pending_per_consumer, redis_service.url)
    assert pending == {} or set(pending.values()) == {0}, pending
    delivered = unique_by_id(receiver.requests)
    assert [e["name"] for e in events_of(delivered, orders)] == [
        "channel_occupied",
        "channel_vacated",
    ]
    assert Counter(e["name"] for e in events_of(delivered, desk)) == {
        "channel_occupied": 1,
        "member_added": 1,
        "member_removed": 1,
        "channel_vacated": 1,
    }
    # in order per channel: added before removed
    desk_names = [e["name"] for e in events_of(delivered, desk)]
    assert desk_names.index("member_added") < desk_names.index("member_removed")
    validate_both(APP, receiver)


@pytest.mark.e2e
async def test_pusher_js_on_two_nodes_occupies_and_vacates_once(
    tmp_path: Path, receiver: Receiver, redis_service: Service
) -> None:
    """pusher-js clients on n1 and n2 subscribe one private channel (tests/e2e/js/
    cluster_pusher_js.mjs two_nodes): one channel_occupied, then one channel_vacated."""
    hook = {
        "url": f"http://127.0.0.1:{receiver.port}/pusher-js",
        "event_types": EVENTS,
        "filter": {"channel_name_starts_with": "private-cluster-"},
    }
    async with cluster_for(tmp_path, redis_service.url, app_for(receiver, hook)) as cluster:
        n1, n2, n3 = cluster.nodes
        live = LiveScenario(n3, "cluster_pusher_js.mjs", "two_nodes", str(n1.port), str(n2.port))
        try:
            ready = await in_thread(live.wait_for, "ready", 30)
            channel = ready["channel"]
            client = pusher_sdk.Pusher(
                app_id=APP["id"], key=APP["key"], secret=APP["secret"], host=n3.host,
                port=n3.port, ssl=False, timeout=5,
            )  # fmt: skip
            await in_thread(client.trigger, channel, "from-python-sdk", {"sdk": "python"})
            result = await in_thread(live.result, n3)
        finally:
            live.kill()
        assert result["ok"] is True, result
        await until(lambda: "channel_vacated" in names_on(receiver, channel), 10, "vacated")
        await asyncio.sleep(DELAY + 1.0)
    assert names_on(receiver, channel) == ["channel_occupied", "channel_vacated"]
    assert {r.line.split()[1] for r in receiver.requests} == {"/pusher-js"}
    validate_both(APP, receiver)
