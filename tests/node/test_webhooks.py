"""Webhook events cluster-wide (node/webhooks.py), three nodes in one process on a memory bus:
each event once for the whole cluster, from the leader (the smallest node id), debounced, and
sent by a survivor when a node dies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from ressonance.models import WEBHOOK_EVENTS, App, Webhook, WebhookEvent
from ressonance.node.node import Node
from ressonance.protocol import signatures
from ressonance.scaling.memory import MemoryBroker, MemoryBus
from ressonance.webhooks.jobs import client_event
from tests.node.fakes import Clock, FakeSocket
from tests.node.test_node import send

HOOK = Webhook("http://127.0.0.1:9/hook", WEBHOOK_EVENTS)
WAPP = App(id="9", key="wkey", secret="wsecret", webhooks=(HOOK,))


class Timers:
    """The webhook source's timers, fired by the test's clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending: list[list[object]] = []

    def later(self, delay: float, callback: Callable[[], None]) -> Timers.Handle:
        entry: list[object] = [self.clock.now + delay, callback, False]
        self.pending.append(entry)
        return Timers.Handle(entry)

    class Handle:
        def __init__(self, entry: list[object]) -> None:
            self.entry = entry

        def cancel(self) -> None:
            self.entry[2] = True

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        due = [e for e in self.pending if e[0] <= self.clock.now and not e[2]]  # type: ignore[operator]
        self.pending = [e for e in self.pending if e not in due and not e[2]]
        for entry in due:
            callback = entry[1]
            assert callable(callback)
            callback()


class Sink:
    """A node's webhook sink (as the server's Recorder): what the node hands it, read back."""

    def __init__(self, name: str, sent: list[tuple[str, WebhookEvent]]) -> None:
        self.name = name
        self.sent = sent
        self.logs: dict[str, list[str]] = {}  # app id → socket id, frame ... (node.receive)

    def log(self, app_id: str) -> list[str]:
        return self.logs.setdefault(app_id, [])

    def event(self, app: App, event: WebhookEvent) -> None:
        self.sent.append((self.name, event))

    def drain(self) -> None:
        """The client events recorded so far, as the leader will read them, into ``sent``."""
        for app_id, log in self.logs.items():
            flat, log[:] = log[:], []
            for index in range(0, len(flat), 2):
                assert app_id == WAPP.id
                self.sent.append((self.name, client_event(flat[index], flat[index + 1])))


class Cluster:
    def __init__(self, bus: MemoryBus, clock: Clock) -> None:
        self.clock = clock
        self.timers = Timers(clock)
        self.sent: list[tuple[str, WebhookEvent]] = []
        self.sinks: list[Sink] = []
        self.nodes = [self._node(bus, name) for name in ("n1", "n2", "n3")]
        self.timers.advance(3.5)  # past the quiet start

    def _node(self, bus: MemoryBus, name: str) -> Node:
        node = Node(MemoryBroker(name, bus), clock=self.clock, node_timeout=10)
        asyncio.run(node.start())
        node.webhooks.later = self.timers.later
        sink = Sink(name, self.sent)
        self.sinks.append(sink)
        node.webhooks.sink = sink
        node.app_changed(WAPP.id, WAPP)
        return node

    def events(self) -> list[tuple[str, WebhookEvent]]:
        for sink in self.sinks:
            sink.drain()
        return self.sent

    def take(self) -> list[tuple[str, str, str, str | None]]:
        out = [(n, e.name, e.channel, e.user_id) for n, e in self.events()]
        self.sent.clear()
        return out


@pytest.fixture
def cluster(bus: MemoryBus, clock: Clock) -> Cluster:
    return Cluster(bus, clock)


def connect(node: Node) -> FakeSocket:
    sock = FakeSocket()
    node.connect(sock, WAPP)
    sock.take()
    return sock


def presence(node: Node, sock: FakeSocket, channel: str, user: str) -> None:
    data = json.dumps({"user_id": user, "user_info": {}})
    auth = signatures.channel_auth("wkey", "wsecret", sock.session.socket_id, channel, data)
    send(node, sock, "pusher:subscribe", {"channel": channel, "auth": auth, "channel_data": data})


def test_occupied_once_when_the_first_arrives_anywhere_vacated_once_when_the_last_leaves(
    cluster: Cluster,
) -> None:
    _, n2, n3 = cluster.nodes
    a, b = connect(n2), connect(n3)
    send(n2, a, "pusher:subscribe", {"channel": "news"})
    send(n3, b, "pusher:subscribe", {"channel": "news"})
    occupied = [e for e in cluster.take() if e[1] == "channel_occupied"]
    assert occupied == [("n1", "channel_occupied", "news", None)]  # the leader, once
    n2.disconnect(a)
    cluster.timers.advance(5)
    assert [e for e in cluster.take() if e[1] == "channel_vacated"] == []  # b is still there
    n3.disconnect(b)
    cluster.timers.advance(2)
    assert [e for e in cluster.take() if e[1] == "channel_vacated"] == []  # waits 3 s
    cluster.timers.advance(1.5)
    assert [e for e in cluster.take() if e[1] == "channel_vacated"] == [
        ("n1", "channel_vacated", "news", None)
    ]


def test_a_reload_within_three_seconds_sends_nothing(cluster: Cluster) -> None:
    _, n2, n3 = cluster.nodes
    tab = connect(n2)
    presence(n2, tab, "presence-room", "alice")
    assert {e[1] for e in cluster.take()} >= {"channel_occupied", "member_added"}
    n2.disconnect(tab)
    cluster.timers.advance(1)
    again = connect(n3)  # the reloaded page lands on another node
    presence(n3, again, "presence-room", "alice")
    cluster.timers.advance(10)
    assert [e for e in cluster.take() if e[1] != "subscription_count"] == []


def test_a_user_with_tabs_on_two_nodes_is_added_and_removed_once(cluster: Cluster) -> None:
    _, n2, n3 = cluster.nodes
    t1, t2 = connect(n2), connect(n3)
    presence(n2, t1, "presence-room", "bob")
    presence(n3, t2, "presence-room", "bob")
    added = [e for e in cluster.take() if e[1] == "member_added"]
    assert added == [("n1", "member_added", "presence-room", "bob")]
    n2.disconnect(t1)
    cluster.timers.advance(5)
    assert [e for e in cluster.take() if e[1] == "member_removed"] == []
    n3.disconnect(t2)
    cluster.timers.advance(3.5)
    assert [e for e in cluster.take() if e[1] == "member_removed"] == [
        ("n1", "member_removed", "presence-room", "bob")
    ]


def test_a_dead_nodes_users_and_channels_are_ended_by_a_survivor(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    presence(n2, connect(n2), "presence-room", "carol")
    cluster.take()
    asyncio.run(n2.broker.close())  # n2 dies without a word
    for _ in range(12):
        cluster.timers.advance(1)
        n1.heartbeat()
        n3.heartbeat()
    cluster.timers.advance(3.5)
    ended = sorted((e[1], e[3]) for e in cluster.take() if e[0] == "n1")
    assert ended == [("channel_vacated", None), ("member_removed", "carol")]


def test_when_the_leader_dies_the_next_one_sends(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    presence(n3, connect(n3), "presence-room", "dave")
    cluster.take()
    asyncio.run(n1.broker.close())  # the leader dies
    for _ in range(12):
        cluster.timers.advance(1)
        n2.heartbeat()
        n3.heartbeat()
    n2.housekeeping()
    n3.housekeeping()
    tab = connect(n3)
    send(n3, tab, "pusher:subscribe", {"channel": "after"})
    assert ("n2", "channel_occupied", "after", None) in cluster.take()  # n2 now leads


def test_client_events_are_sent_by_the_node_that_received_them(cluster: Cluster) -> None:
    _, n2, n3 = cluster.nodes
    sender, other = connect(n2), connect(n3)
    presence(n2, sender, "presence-chat", "erin")
    presence(n3, other, "presence-chat", "frank")
    cluster.take()
    send(n2, sender, "client-typing", {"on": True}, "presence-chat")
    (event,) = [e for n, e in cluster.events() if e.name == "client_event"]
    assert [n for n, e in cluster.sent if e.name == "client_event"] == ["n2"]
    assert event.to_json() == {
        "name": "client_event",
        "channel": "presence-chat",
        "user_id": "erin",
        "event": "client-typing",
        "data": '{"on":true}',
        "socket_id": sender.session.socket_id,
    }


def test_client_events_are_recorded_only_for_the_channels_a_webhook_wants(
    cluster: Cluster,
) -> None:
    """The node's inline check (node.receive): an app whose client_event webhooks all filter
    channels records only the events on channels one of them wants; data kept as sent."""
    n2 = cluster.nodes[1]
    narrow = Webhook("http://127.0.0.1:9/x", ("client_event",), channel_name_ends_with="-log")
    app = App(id="9", key="wkey", secret="wsecret", webhooks=(narrow,))
    for node in cluster.nodes:
        node.app_changed(app.id, app)
    a, b = connect(n2), connect(n2)
    for channel in ("private-chat", "private-chat-log"):
        for sock in (a, b):
            auth = signatures.channel_auth("wkey", "wsecret", sock.session.socket_id, channel)
            send(n2, sock, "pusher:subscribe", {"channel": channel, "auth": auth})
    send(n2, a, "client-x", "plain text", "private-chat")
    send(n2, a, "client-x", "plain text", "private-chat-log")
    recorded = [e for _, e in cluster.events() if e.name == "client_event"]
    assert [(e.channel, e.data, e.user_id) for e in recorded] == [
        ("private-chat-log", "plain text", None)  # a string stays a string; not presence
    ]


def test_a_node_without_a_sink_records_no_client_event(bus: MemoryBus, clock: Clock) -> None:
    """Webhooks off on a node (no sink): nothing is kept for client events, however many."""
    node = Node(MemoryBroker("solo", bus), clock=clock, node_timeout=10)
    asyncio.run(node.start())
    node.app_changed(WAPP.id, WAPP)
    a, b = connect(node), connect(node)
    for sock in (a, b):
        auth = signatures.channel_auth("wkey", "wsecret", sock.session.socket_id, "private-c")
        send(node, sock, "pusher:subscribe", {"channel": "private-c", "auth": auth})
    for _ in range(5):
        send(node, a, "client-x", {}, "private-c")
    state = node.hub.get(WAPP.id)
    assert state is not None and state.webhook_log is None
    assert node.webhooks.client_hooks == {}
    sink = Sink("solo", [])
    node.set_webhook_sink(sink)  # set later: the apps known are followed at once
    send(node, a, "client-x", {}, "private-c")
    assert list(sink.logs) == [WAPP.id] and len(sink.logs[WAPP.id]) == 2
    assert sink.logs[WAPP.id][0] == a.session.socket_id


def test_an_app_without_the_event_type_or_filter_gets_nothing(cluster: Cluster) -> None:
    n2 = cluster.nodes[1]
    narrow = Webhook("http://127.0.0.1:9/x", ("channel_occupied",), channel_name_starts_with="a-")
    app = App(id="9", key="wkey", secret="wsecret", webhooks=(narrow,))
    for node in cluster.nodes:
        node.app_changed(app.id, app)
    sock = connect(n2)
    for channel in ("b-chan", "a-chan"):
        send(n2, sock, "pusher:subscribe", {"channel": channel})
    assert cluster.take() == [("n1", "channel_occupied", "a-chan", None)]
    for node in cluster.nodes:
        node.app_changed(app.id, App(id="9", key="wkey", secret="wsecret"))  # webhooks off
    send(n2, sock, "pusher:subscribe", {"channel": "a-other"})
    assert cluster.take() == []


def test_a_starting_node_learns_quietly(bus: MemoryBus, clock: Clock) -> None:
    cluster = Cluster(bus, clock)
    sock = connect(cluster.nodes[1])
    send(cluster.nodes[1], sock, "pusher:subscribe", {"channel": "news"})
    cluster.take()
    late = cluster._node(bus, "n0")  # a new leader (smallest id) joins
    late.heartbeat()
    for node in cluster.nodes:
        node.heartbeat()
    assert [e for e in cluster.take() if e[1] == "channel_occupied"] == []


def test_a_presence_channel_is_occupied_before_its_first_member_is_added(
    cluster: Cluster,
) -> None:
    """The leader hears another node's join before its counts: occupied still comes first."""
    n2 = cluster.nodes[1]
    presence(n2, connect(n2), "presence-first", "gina")
    sent = [(e[1], e[2]) for e in cluster.take() if e[1] != "subscription_count"]
    assert sent == [("channel_occupied", "presence-first"), ("member_added", "presence-first")]
