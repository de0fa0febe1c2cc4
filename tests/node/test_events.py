"""The node's event port: each domain event where the change starts, once, with its fields;
fan-out counted once per message; member and channel changes only on the origin node; nothing
built when nobody listens; a failing listener breaks nothing."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest

from ressonance.node import events
from ressonance.node.events import Event
from ressonance.node.node import Node
from ressonance.scaling.memory import MemoryBroker, MemoryBus
from tests.node.fakes import Clock
from tests.node.test_node import APP, connect, join_presence, send


def started(node: Node) -> Node:
    asyncio.run(node.start())
    return node


@pytest.fixture
def node(clock: Clock) -> Node:
    return started(Node(MemoryBroker(), clock=clock))


def recorder(node: Node) -> list[Event]:
    seen: list[Event] = []
    node.events.listen(seen.append)
    return seen


def test_connection_subscription_and_channel_events_in_order(node: Node) -> None:
    seen = recorder(node)
    a = connect(node)
    sid = a.session.socket_id
    b = connect(node)
    send(node, a, "pusher:subscribe", {"channel": "news"})
    send(node, b, "pusher:subscribe", {"channel": "news"})
    send(node, a, "pusher:unsubscribe", {"channel": "news"})
    node.disconnect(b)
    kinds = [type(e).__name__ for e in seen if not isinstance(e, events.Delivered)]
    assert kinds == [
        "ConnectionOpened",
        "ConnectionOpened",
        "Subscribed",
        "ChannelOccupied",  # the first subscriber only
        "Subscribed",
        "Unsubscribed",
        "Unsubscribed",
        "ChannelVacated",  # the last one only
        "ConnectionClosed",
    ]
    assert seen[0] == events.ConnectionOpened("1", sid)
    assert events.Subscribed("1", "news", sid) in seen
    assert events.ChannelVacated("1", "news") in seen


def test_members_added_and_removed_once_per_user(node: Node) -> None:
    seen = recorder(node)
    a, a2 = connect(node), connect(node)
    join_presence(node, a, "presence-room", "ann")
    join_presence(node, a2, "presence-room", "ann")  # the same user again: no event
    node.disconnect(a)
    assert [e for e in seen if isinstance(e, events.MemberAdded)] == [
        events.MemberAdded("1", "presence-room", "ann")
    ]
    assert not [e for e in seen if isinstance(e, events.MemberRemoved)]
    node.disconnect(a2)  # the user's last socket
    assert [e for e in seen if isinstance(e, events.MemberRemoved)] == [
        events.MemberRemoved("1", "presence-room", "ann")
    ]


def test_fan_out_is_counted_once_per_message_not_per_socket(node: Node) -> None:
    sockets = [connect(node) for _ in range(5)]
    for sock in sockets:
        send(node, sock, "pusher:subscribe", {"channel": "news"})
    seen = recorder(node)
    node.publish(APP, "news", "update", '{"n":1}', exclude=sockets[0].session.socket_id)
    published = [e for e in seen if isinstance(e, events.MessagePublished)]
    delivered = [e for e in seen if isinstance(e, events.Delivered)]
    assert published == [events.MessagePublished("1", "news", "update", 7)]
    assert len(delivered) == 1
    assert delivered[0].sockets == 4  # five subscribers less the excluded one
    assert delivered[0].size > 7


def test_client_event_and_error_sent(clock: Clock) -> None:
    node = started(Node(MemoryBroker(), clock=clock))
    seen = recorder(node)
    app = APP
    a, b = connect(node, app), connect(node, app)
    for sock in (a, b):
        join_presence(node, sock, "presence-chat", sock.session.socket_id)
    send(node, a, "client-typing", {"x": 1}, channel="presence-chat")
    client = [e for e in seen if isinstance(e, events.ClientEvent)]
    assert len(client) == 1
    assert client[0].socket_id == a.session.socket_id
    assert (client[0].channel, client[0].event) == ("presence-chat", "client-typing")
    send(node, a, "pusher:subscribe", {"channel": "private-x", "auth": "key:bad"})
    node.fail(b, 4201, "Pong reply not received")
    errors = [e for e in seen if isinstance(e, events.ErrorSent)]
    assert events.ErrorSent("1", b.session.socket_id, 4201, "Pong reply not received") in errors


def test_member_and_channel_events_only_on_the_origin_node(clock: Clock) -> None:
    bus = MemoryBus()
    n1 = started(Node(MemoryBroker("n1", bus), clock=clock))
    n2 = started(Node(MemoryBroker("n2", bus), clock=clock))
    seen1, seen2 = recorder(n1), recorder(n2)
    watcher = connect(n2)
    join_presence(n2, watcher, "presence-room", "bob")
    seen2.clear()
    a = connect(n1)
    join_presence(n1, a, "presence-room", "ann")
    assert events.MemberAdded("1", "presence-room", "ann") in seen1
    # n2 delivers member_added to its subscriber, but the change started on n1
    assert not [e for e in seen2 if isinstance(e, events.MemberAdded | events.ChannelOccupied)]
    assert [e for e in seen2 if isinstance(e, events.Delivered)]
    # the channel was occupied in the cluster already (bob on n2): no ChannelOccupied on n1
    assert not [e for e in seen1 if isinstance(e, events.ChannelOccupied)]


def test_no_event_is_built_when_nobody_listens(node: Node) -> None:
    boom = mock.Mock(side_effect=AssertionError("built with no listener"))
    names = [
        "ConnectionOpened",
        "ConnectionClosed",
        "Subscribed",
        "Unsubscribed",
        "ChannelOccupied",
        "ChannelVacated",
        "MemberAdded",
        "MemberRemoved",
        "MessagePublished",
        "ClientEvent",
        "Delivered",
        "ErrorSent",
    ]
    with mock.patch.multiple(events, **dict.fromkeys(names, boom)):
        a, b = connect(node), connect(node)
        for sock in (a, b):
            join_presence(node, sock, "presence-room", sock.session.socket_id)
        send(node, a, "client-hi", {}, channel="presence-room")
        node.publish(APP, "presence-room", "update", "{}")
        node.fail(b, 4201, "Pong reply not received")
        node.disconnect(a)
        node.disconnect(b)
    boom.assert_not_called()


def test_a_failing_listener_is_logged_and_the_others_still_run(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    node.events.listen(broken)
    seen = recorder(node)
    sock = connect(node)  # the node goes on
    send(node, sock, "pusher:subscribe", {"channel": "news"})
    assert any(isinstance(e, events.Subscribed) for e in seen)
    assert "an event listener failed on ConnectionOpened" in caplog.text
    node.events.unlisten(broken)
    node.events.unlisten(seen.append)
    assert node.events.listeners == ()
