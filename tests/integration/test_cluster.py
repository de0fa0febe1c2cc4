"""Three real nodes on a private redis-server (and, where marked, nats-server) as one cluster:
what a client on one node sees of publishes, client events, presence members, queries,
terminations, ``sendToUser`` and cache channels made through the others.

The same rules are checked exactly, in one process, in tests/node/test_cluster.py; here they
cross real processes and a real broker, so every cross-node observation polls with a deadline
(tests/support/cluster.py) and "nothing arrived" is asserted only after a barrier: once a later
message of the same sender has arrived, an earlier one would have too.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cluster import Cluster, run_cluster
from tests.support.services import Service, nats_server, redis_server
from tests.support.wsclient import PusherWS, pusher

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with redis_server(tmp_path_factory.mktemp("redis")) as service:
        yield service


@pytest.fixture(scope="module")
def cluster(redis: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """n1, n2, n3 on one Redis, shared by the tests of this module (channels are unique)."""
    with run_cluster(tmp_path_factory.mktemp("cluster"), redis.url) as running:
        yield running
        running.assert_no_traceback()


@pytest.fixture(scope="module", params=["redis", "nats"])
def any_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The Redis cluster above, then three nodes on a private nats-server."""
    if request.param == "redis":
        yield request.getfixturevalue("cluster")
        return
    with (
        nats_server(tmp_path_factory.mktemp("nats")) as nats,
        run_cluster(tmp_path_factory.mktemp("nats-cluster"), nats.url) as running,
    ):
        yield running
        running.assert_no_traceback()


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


async def until(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking cluster call (HTTP, polling) off the event loop the clients use."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def next_event(client: PusherWS, channel: str, timeout: float = 5) -> dict[str, Any]:
    """The next frame on ``channel`` but for background ones (pings, subscription counts)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.recv_event(timeout)
            if frame.get("channel") == channel and frame["event"] != (
                "pusher_internal:subscription_count"
            ):
                return frame


def test_publish_and_batch_through_a_third_node(any_cluster: Cluster) -> None:
    cluster = any_cluster
    orders, stock = unique("orders-"), unique("stock-")

    async def scenario() -> None:
        async with pusher(cluster[0]) as a, pusher(cluster[1]) as b:
            await a.subscribe_ok(orders)
            await b.subscribe_ok(orders)
            await b.subscribe_ok(stock)
            await until(cluster.wait_count, 2, orders, 2)
            await until(cluster.trigger, 2, orders, "shipped", {"id": 7})
            for client in (a, b):
                frame = await next_event(client, orders)
                assert (frame["event"], frame["data"]) == ("shipped", {"id": 7})
            batch = [
                {"channel": orders, "name": "paid", "data": json.dumps({"id": 8})},
                {"channel": stock, "name": "low", "data": json.dumps({"sku": "x"})},
            ]
            path = f"/apps/{cluster.app['id']}/batch_events"
            status, _ = await until(cluster.call, 2, "POST", path, {"batch": batch})
            assert status == 200
            assert (await next_event(a, orders))["data"] == {"id": 8}
            assert (await next_event(b, orders))["data"] == {"id": 8}
            assert (await next_event(b, stock))["data"] == {"sku": "x"}

    asyncio.run(scenario())


def test_presence_members_are_users_of_the_whole_cluster(any_cluster: Cluster) -> None:
    cluster = any_cluster
    room = unique("presence-room-")

    async def scenario() -> None:
        async with pusher(cluster[0]) as alice1, pusher(cluster[1]) as bob:
            await alice1.subscribe_presence(room, "alice", {"name": "Alice"})
            await until(cluster.wait_users, 1, room, ["alice"])
            joined = await bob.subscribe_presence(room, "bob")
            presence = joined["data"]["presence"]
            assert sorted(presence["ids"]) == ["alice", "bob"]
            assert presence["hash"]["alice"] == {"name": "Alice"}
            added = await alice1.expect("pusher_internal:member_added", channel=room)
            assert added["data"] == {"user_id": "bob", "user_info": None}

            # Alice's second socket, on a third node: she is already a member.
            async with pusher(cluster[2]) as alice2:
                again = await alice2.subscribe_presence(room, "alice", {"name": "Alice"})
                assert again["data"]["presence"]["count"] == 2
                await until(cluster.barrier, 2, 1)
                await bob.expect_nothing(0.3, "pusher_internal:member_added")

                # Her first socket goes: she is still in the room through the other node.
                await alice1.close()
                await until(cluster.wait_count, 1, room, 2)
                await bob.expect_nothing(0.3, "pusher_internal:member_removed")
                await until(cluster.wait_users, 1, room, ["alice", "bob"])
            # Her last socket goes.
            removed = await bob.expect("pusher_internal:member_removed", channel=room)
            assert removed["data"] == {"user_id": "alice"}
            await until(cluster.wait_users, 0, room, ["bob"])

    asyncio.run(scenario())


def test_socket_id_exclusion_across_nodes(cluster: Cluster) -> None:
    channel = unique("news-")

    async def scenario() -> None:
        async with pusher(cluster[0]) as a, pusher(cluster[1]) as b:
            await a.subscribe_ok(channel)
            await b.subscribe_ok(channel)
            await until(cluster.wait_count, 2, channel, 2)
            await until(cluster.trigger, 2, channel, "first", {}, socket_id=a.socket_id)
            await until(cluster.trigger, 2, channel, "second", {})
            # From one sending node, publications arrive in order: a's next is the second one.
            assert (await next_event(a, channel))["event"] == "second"
            assert (await next_event(b, channel))["event"] == "first"
            assert (await next_event(b, channel))["event"] == "second"

    asyncio.run(scenario())


def test_client_events_cross_nodes_but_not_back_to_the_sender(cluster: Cluster) -> None:
    chat, room = unique("private-chat-"), unique("presence-chat-")

    async def scenario() -> None:
        async with (
            pusher(cluster[0]) as a,
            pusher(cluster[1]) as b,
            pusher(cluster[2]) as c,
        ):
            for client in (a, b, c):
                await client.subscribe_private(chat)
            await a.subscribe_presence(room, "ada")
            await b.subscribe_presence(room, "bo")
            await until(cluster.wait_count, 0, chat, 3)
            await a.send("client-typing", {"n": 1}, chat)
            for client in (b, c):
                frame = await next_event(client, chat)
                assert (frame["event"], frame["data"]) == ("client-typing", {"n": 1})
            await until(cluster.trigger, 0, chat, "marker", {})
            assert (await next_event(a, chat))["event"] == "marker"
            # On a presence channel the receiver learns who sent it.
            await a.send("client-wave", {}, room)
            frame = await b.expect("client-wave", channel=room, skip_others=True)
            assert frame["user_id"] == "ada"

    asyncio.run(scenario())


def test_channel_queries_on_a_node_without_sockets(cluster: Cluster) -> None:
    room, public = unique("presence-q-"), unique("q-")
    app_id = cluster.app["id"]

    async def scenario() -> None:
        async with pusher(cluster[0]) as alice, pusher(cluster[1]) as bob:
            await bob.subscribe_ok(public)
            await alice.subscribe_ok(public)
            await alice.subscribe_presence(room, "alice")
            await bob.subscribe_presence(room, "bob")
            await until(cluster.wait_count, 2, public, 2)
            await until(cluster.wait_count, 2, room, 2)

            status, body = await until(cluster.call, 2, "GET", f"/apps/{app_id}/channels")
            assert status == 200
            assert {room, public} <= set(body["channels"])
            params = {"filter_by_prefix": "presence-q-", "info": "user_count"}
            status, body = await until(
                cluster.call, 2, "GET", f"/apps/{app_id}/channels", None, params
            )
            assert status == 200
            assert body["channels"][room] == {"user_count": 2}
            params = {"info": "user_count,subscription_count"}
            status, body = await until(
                cluster.call, 2, "GET", f"/apps/{app_id}/channels/{room}", None, params
            )
            assert status == 200
            assert body == {"occupied": True, "user_count": 2, "subscription_count": 2}
            assert await until(cluster.users, 2, room) == ["alice", "bob"]
        await until(cluster.wait_count, 2, public, 0)
        status, body = await until(cluster.call, 2, "GET", f"/apps/{app_id}/channels")
        assert room not in body["channels"]
        assert public not in body["channels"]

    asyncio.run(scenario())


def test_terminate_connections_from_a_node_the_user_is_not_on(cluster: Cluster) -> None:
    user = unique("u")
    path = f"/apps/{cluster.app['id']}/users/{user}/terminate_connections"

    async def scenario() -> None:
        async with (
            pusher(cluster[0]) as first,
            pusher(cluster[1]) as second,
            pusher(cluster[0]) as bystander,
        ):
            await first.signin(user)
            await second.signin(user)
            await bystander.signin(unique("other"))
            status, _ = await until(cluster.call, 2, "POST", path, {})
            assert status == 200
            for client in (first, second):
                code, _, frames = await client.expect_close()
                assert code == 4009
                assert any(f.get("event") == "pusher:error" for f in frames)
            assert await bystander.is_open()

    asyncio.run(scenario())


def test_send_to_user_reaches_every_node_the_user_is_on(cluster: Cluster) -> None:
    user = unique("u")
    channel = f"#server-to-user-{user}"

    async def scenario() -> None:
        async with pusher(cluster[0]) as here, pusher(cluster[2]) as there:
            for client in (here, there):
                await client.signin(user)
                await client.subscribe_ok(channel)
            await until(cluster.trigger, 1, channel, "greeting", {"hi": user})
            for client in (here, there):
                frame = await next_event(client, channel)
                assert (frame["event"], frame["data"]) == ("greeting", {"hi": user})

    asyncio.run(scenario())


def test_cache_channel_event_published_on_one_node_is_served_by_another(
    cluster: Cluster,
) -> None:
    channel = unique("cache-rates-")
    app_id = cluster.app["id"]

    def cached_on_second_node() -> Any:
        status, body = cluster.call(
            1, "GET", f"/apps/{app_id}/channels/{channel}", None, {"info": "cache"}
        )
        assert status == 200, body
        return body.get("cache")

    async def scenario() -> None:
        await until(cluster.trigger, 0, channel, "rate", {"eur": 1.08})
        cached = await until(
            cluster.wait_until, cached_on_second_node, bool, 5, "the cache on node 2"
        )
        assert cached["event"] == "rate"
        async with pusher(cluster[1]) as late:
            await late.subscribe_ok(channel)
            frame = await next_event(late, channel)
            assert (frame["event"], frame["data"]) == ("rate", {"eur": 1.08})

    asyncio.run(scenario())


def test_a_closed_client_is_gone_from_every_node(cluster: Cluster) -> None:
    """Counts follow a socket that goes: no node keeps counting it."""
    channel = unique("gone-")

    async def scenario() -> None:
        async with pusher(cluster[0]) as a:
            await a.subscribe_ok(channel)
            for index in (1, 2):
                await until(cluster.wait_count, index, channel, 1)
        for index in (0, 1, 2):
            await until(cluster.wait_count, index, channel, 0)

    asyncio.run(scenario())
