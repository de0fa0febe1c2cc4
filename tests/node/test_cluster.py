"""Several nodes in one process on a memory bus: the cluster-wide rules without a network.

The same rules run over Redis and NATS in tests/integration/test_cluster.py; here every message
is delivered in order and at once, so each rule is checked exactly.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ressonance.errors import PusherError
from ressonance.models import App
from ressonance.node import queries
from ressonance.node.node import Node
from ressonance.scaling.memory import MemoryBroker, MemoryBus
from tests.node.fakes import Clock, FakeSocket
from tests.node.test_node import APP, connect, join_presence, send


def make_node(bus: MemoryBus, clock: Clock, name: str) -> Node:
    node = Node(MemoryBroker(name, bus), clock=clock, node_timeout=10)
    asyncio.run(node.start())
    return node


@pytest.fixture
def nodes(bus: MemoryBus, clock: Clock) -> list[Node]:
    return [make_node(bus, clock, name) for name in ("n1", "n2", "n3")]


def events(sock: FakeSocket, name: str) -> list[dict[str, object]]:
    return [f for f in sock.take() if f["event"] == name]


def names(sock: FakeSocket) -> list[str]:
    """The events ``sock`` received, but for subscription counts (APP sends them)."""
    return [str(f["event"]) for f in sock.take() if "subscription_count" not in str(f["event"])]


def test_publish_and_client_events_reach_every_node_with_exclusion(nodes: list[Node]) -> None:
    n1, n2, n3 = nodes
    a, b = connect(n2), connect(n3)
    for sock, node in ((a, n2), (b, n3)):
        send(node, sock, "pusher:subscribe", {"channel": "news"})
        sock.take()
    n1.publish(APP, "news", "e", "{}", exclude=a.session.socket_id)
    assert names(a) == []
    assert names(b) == ["e"]
    p1, p2 = connect(n1), connect(n2)
    for sock, node in ((p1, n1), (p2, n2)):
        auth_subscribe_private(node, sock, "private-chat")
    send(n1, p1, "client-typing", {"x": 1}, "private-chat")
    assert names(p1) == []
    assert names(p2) == ["client-typing"]


def auth_subscribe_private(node: Node, sock: FakeSocket, channel: str) -> None:
    from ressonance.protocol import signatures

    auth = signatures.channel_auth("key", "secret", sock.session.socket_id, channel)
    send(node, sock, "pusher:subscribe", {"channel": channel, "auth": auth})
    sock.take()


def test_presence_is_per_user_across_nodes(nodes: list[Node]) -> None:
    n1, n2, n3 = nodes
    alice1, bob, alice3 = connect(n1), connect(n2), connect(n3)
    join_presence(n1, alice1, "presence-room", "alice")
    alice1.take()
    join_presence(n2, bob, "presence-room", "bob")
    (ok,) = events(bob, "pusher_internal:subscription_succeeded")
    presence = json.loads(str(ok["data"]))["presence"]
    assert sorted(presence["ids"]) == ["alice", "bob"] and presence["count"] == 2
    assert [
        json.loads(str(f["data"]))["user_id"]
        for f in events(alice1, "pusher_internal:member_added")
    ] == ["bob"]
    join_presence(n3, alice3, "presence-room", "alice")  # alice's second socket: no event
    assert events(bob, "pusher_internal:member_added") == []
    assert events(alice1, "pusher_internal:member_added") == []
    send(n1, alice1, "pusher:unsubscribe", {"channel": "presence-room"})
    assert events(bob, "pusher_internal:member_removed") == []  # still on n3
    n3.disconnect(alice3)
    (removed,) = events(bob, "pusher_internal:member_removed")
    assert json.loads(str(removed["data"])) == {"user_id": "alice"}


def test_queries_answer_for_the_whole_cluster_from_any_node(nodes: list[Node]) -> None:
    n1, n2, n3 = nodes
    for node, user in ((n1, "u1"), (n2, "u2"), (n2, "u1")):
        join_presence(node, connect(node), "presence-room", user)
    send(n1, connect(n1), "pusher:subscribe", {"channel": "news"})
    stats = asyncio.run(queries.channel_stats(n3, APP))
    assert {k: (v.subscription_count, v.user_count) for k, v in stats.items()} == {
        "presence-room": (3, 2),
        "news": (1, None),
    }
    one = asyncio.run(queries.one_channel(n3, APP, "presence-room"))
    assert (one.subscription_count, one.user_count) == (3, 2)
    users = asyncio.run(queries.channel_users(n3, APP, "presence-room"))
    assert users == {"u1": {"u": "u1"}, "u2": {"u": "u2"}}


def test_limits_count_the_whole_cluster(nodes: list[Node]) -> None:
    n1, n2, n3 = nodes
    limited = App(id="9", key="k9", secret="s", max_connections=2)
    connect(n1, limited)
    connect(n2, limited)
    for node in nodes:
        node.heartbeat()  # heartbeats carry the connections per app
    with pytest.raises(PusherError) as info:
        n3.admit(limited, "7", None)
    assert info.value.code == 4004
    join_presence(n1, connect(n1), "presence-full", "u1")
    join_presence(n2, connect(n2), "presence-full", "u2")
    third = connect(n3)
    join_presence(n3, third, "presence-full", "u3")  # APP allows 2 members
    (error,) = events(third, "pusher:subscription_error")
    assert error["data"] == {
        "type": "LimitReached",
        "error": "Presence channel is full",
        "status": 4100,
    }


def test_subscription_count_is_cluster_wide(nodes: list[Node]) -> None:
    n1, n2, _ = nodes
    a, b = connect(n1), connect(n2)
    send(n1, a, "pusher:subscribe", {"channel": "room"})
    a.take()
    send(n2, b, "pusher:subscribe", {"channel": "room"})
    counts = [json.loads(str(f["data"])) for f in events(a, "pusher_internal:subscription_count")]
    assert counts == [{"subscription_count": 2}]
    assert [
        json.loads(str(f["data"])) for f in events(b, "pusher_internal:subscription_count")
    ] == [{"subscription_count": 2}]


def test_terminate_and_send_to_user_across_nodes(nodes: list[Node]) -> None:
    n1, n2, _ = nodes
    sock = connect(n2)
    from ressonance.protocol import signatures

    user_data = json.dumps({"id": "u7"})
    auth = signatures.user_auth("key", "secret", sock.session.socket_id, user_data)
    send(n2, sock, "pusher:signin", {"user_data": user_data, "auth": auth})
    send(n2, sock, "pusher:subscribe", {"channel": "#server-to-user-u7"})
    sock.take()
    n1.publish(APP, "#server-to-user-u7", "hello", "{}")
    assert [f["event"] for f in sock.take()] == ["hello"]
    n1.terminate_user(APP, "u7")
    assert sock.closed is not None and sock.closed[0] == 4009


def test_a_silent_node_is_dropped_with_its_members(nodes: list[Node], clock: Clock) -> None:
    n1, n2, n3 = nodes
    watcher = connect(n1)
    join_presence(n1, watcher, "presence-room", "w")
    join_presence(n2, connect(n2), "presence-room", "ghost")
    send(n2, connect(n2), "pusher:subscribe", {"channel": "news"})
    watcher.take()
    asyncio.run(n2.broker.close())  # n2 dies without a word
    for _ in range(12):
        clock.now += 1
        n1.heartbeat()
        n3.heartbeat()
    (removed,) = events(watcher, "pusher_internal:member_removed")
    assert json.loads(str(removed["data"])) == {"user_id": "ghost"}
    stats = asyncio.run(queries.channel_stats(n3, APP))
    assert {k: v.subscription_count for k, v in stats.items()} == {"presence-room": 1}


def test_a_node_that_stops_says_goodbye(nodes: list[Node]) -> None:
    n1, n2, _ = nodes
    watcher = connect(n1)
    join_presence(n1, watcher, "presence-room", "w")
    leaving = connect(n2)
    join_presence(n2, leaving, "presence-room", "leaving")
    watcher.take()
    n2.disconnect(leaving)
    asyncio.run(n2.stop())
    assert len(events(watcher, "pusher_internal:member_removed")) == 1
    assert "n2" not in n1.view.peers


def test_a_lost_message_is_healed_by_a_state_request(
    bus: MemoryBus, nodes: list[Node], clock: Clock
) -> None:
    n1, n2, _ = nodes
    watcher = connect(n1)
    join_presence(n1, watcher, "presence-room", "w")
    watcher.take()
    n1_broker = n1.broker
    assert isinstance(n1_broker, MemoryBroker)
    handler, n1_broker.handler = n1_broker.handler, None  # n1 misses n2's join
    join_presence(n2, connect(n2), "presence-room", "late")
    n1_broker.handler = handler
    assert asyncio.run(queries.channel_users(n1, APP, "presence-room")) == {"w": {"u": "w"}}
    n2.heartbeat()  # the heartbeat's sequence number shows the gap: n1 asks n2 for its state
    assert set(asyncio.run(queries.channel_users(n1, APP, "presence-room"))) == {"w", "late"}
    assert [
        json.loads(str(f["data"]))["user_id"]
        for f in events(watcher, "pusher_internal:member_added")
    ] == ["late"]


def test_cache_is_shared_and_handed_to_a_new_node(
    bus: MemoryBus, clock: Clock, nodes: list[Node]
) -> None:
    n1, n2, _ = nodes
    n1.publish(APP, "cache-prices", "tick", '{"p":1}')
    sock = connect(n2)
    send(n2, sock, "pusher:subscribe", {"channel": "cache-prices"})
    assert names(sock)[-1] == "tick"
    late = make_node(bus, clock, "n4")
    cached = queries.cached_event(late, APP, "cache-prices")
    assert cached is not None and (cached.event, cached.data) == ("tick", '{"p":1}')


def test_a_restarted_node_replaces_what_it_had(
    bus: MemoryBus, clock: Clock, nodes: list[Node]
) -> None:
    n1, n2, _ = nodes
    watcher = connect(n1)
    join_presence(n1, watcher, "presence-room", "w")
    join_presence(n2, connect(n2), "presence-room", "old")
    watcher.take()
    asyncio.run(n2.broker.close())  # killed, then back at once under the same name
    make_node(bus, clock, "n2")
    (removed,) = events(watcher, "pusher_internal:member_removed")
    assert json.loads(str(removed["data"])) == {"user_id": "old"}


def test_state_requests_in_one_tick_get_one_state_and_later_ones_wait(
    bus: MemoryBus, clock: Clock
) -> None:
    """After a broker outage every node asks every other for its state: a node answers all
    the requests of a loop tick with one state, and sends states at most every half second."""
    node = make_node(bus, clock, "n1")
    sent: list[str] = []
    real_send = node.broker.send
    node.broker.send = lambda payload: (sent.append(payload), real_send(payload))[1]  # type: ignore[method-assign]

    def states() -> int:
        return sum(json.loads(p)["t"] == "state" for p in sent)

    async def scenario() -> None:
        for peer in ("n2", "n3", "n4"):
            node.control(peer, json.dumps({"t": "sync", "to": "n1", "s": 1}))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert states() == 1
        clock.now += 0.1  # a request soon after: answered, but not before 0.5 s have passed
        node.control("n2", json.dumps({"t": "sync", "to": "n1", "s": 2}))
        await asyncio.sleep(0.05)
        assert states() == 1
        clock.now += 0.4
        await asyncio.sleep(0.5)
        assert states() == 2

    asyncio.run(scenario())


def test_channel_list_limit_counts_local_and_remote_channels_once(nodes: list[Node]) -> None:
    n1, n2, _ = nodes
    for node, channel in ((n1, "a"), (n2, "a"), (n2, "b"), (n1, "c"), (n2, "d")):
        send(node, connect(node), "pusher:subscribe", {"channel": channel})
    full = asyncio.run(queries.channel_stats(n1, APP))
    assert {k: v.subscription_count for k, v in full.items()} == {"a": 2, "b": 1, "c": 1, "d": 1}
    first = asyncio.run(queries.channel_stats(n1, APP, limit=3))
    assert list(first) == ["a", "c", "b"]  # this node's channels first, each once
    assert first["a"].subscription_count == 2
