"""Node + memory broker + fake sockets: the rules that span several connections."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ressonance.errors import PusherError
from ressonance.models import App
from ressonance.node import queries
from ressonance.node.node import Node
from ressonance.protocol import signatures
from ressonance.scaling.memory import MemoryBroker
from tests.node.fakes import Clock, FakeSocket

APP = App(id="1", key="key", secret="secret", subscription_count=True, max_presence_members=2)


@pytest.fixture
def node(clock: Clock) -> Node:
    n = Node(MemoryBroker(), clock=clock)
    asyncio.run(n.start())
    return n


def connect(node: Node, app: App = APP) -> FakeSocket:
    sock = FakeSocket()
    node.connect(sock, app)
    assert sock.take()[0]["event"] == "pusher:connection_established"
    return sock


def send(node: Node, sock: FakeSocket, event: str, data: Any, channel: str | None = None) -> None:
    frame: dict[str, Any] = {"event": event, "data": data}
    if channel:
        frame["channel"] = channel
    node.receive(sock, json.dumps(frame))


def join_presence(node: Node, sock: FakeSocket, channel: str, user: str) -> None:
    cd = json.dumps({"user_id": user, "user_info": {"u": user}})
    auth = signatures.channel_auth("key", "secret", sock.session.socket_id, channel, cd)
    send(node, sock, "pusher:subscribe", {"channel": channel, "auth": auth, "channel_data": cd})


def test_admission_codes(node: Node) -> None:
    with pytest.raises(PusherError) as info:
        node.admit(None, "7", None)
    assert info.value.code == 4001
    with pytest.raises(PusherError) as info:
        node.admit(App(id="2", key="k", secret="s", enabled=False), "7", None)
    assert info.value.code == 4003
    with pytest.raises(PusherError) as info:
        node.admit(APP, "5", None)
    assert info.value.code == 4007
    assert node.admit(APP, None, None) is APP  # a missing protocol is accepted
    limited = App(id="3", key="k3", secret="s", max_connections=1)
    connect(node, limited)
    with pytest.raises(PusherError) as info:
        node.admit(limited, "7", None)
    assert info.value.code == 4004
    strict = App(id="4", key="k4", secret="s", allowed_origins=("https://a.example",))
    assert node.admit(strict, "7", "https://a.example")
    with pytest.raises(PusherError) as info:
        node.admit(strict, "7", "https://evil.example")
    assert info.value.code == 4009


def test_presence_first_and_last_socket(node: Node) -> None:
    a1, a2, b = connect(node), connect(node), connect(node)
    join_presence(node, b, "presence-room", "bob")
    b.take()
    join_presence(node, a1, "presence-room", "alice")
    succeeded = json.loads(a1.take()[0]["data"])
    assert succeeded["presence"]["count"] == 2
    assert [f["event"] for f in b.take()] == ["pusher_internal:member_added"]
    join_presence(node, a2, "presence-room", "alice")  # second tab: no member_added
    assert b.take() == []
    assert a1.take() == []  # the joining user never gets its own member_added
    node.disconnect(a1)
    assert b.take() == []  # alice still has a socket
    node.disconnect(a2)
    removed = b.take()
    assert [f["event"] for f in removed] == ["pusher_internal:member_removed"]
    assert json.loads(removed[0]["data"]) == {"user_id": "alice"}


def test_presence_limit_counts_users_not_sockets(node: Node) -> None:
    socks = [connect(node) for _ in range(4)]
    join_presence(node, socks[0], "presence-x", "1")
    join_presence(node, socks[1], "presence-x", "2")
    join_presence(node, socks[2], "presence-x", "1")  # same user again: allowed
    assert socks[2].take()[-1]["event"] == "pusher_internal:subscription_succeeded"
    join_presence(node, socks[3], "presence-x", "3")
    error = socks[3].take()[-1]
    assert error["event"] == "pusher:subscription_error"
    assert error["data"]["type"] == "LimitReached"


def test_client_event_not_echoed_and_user_id_on_presence(node: Node) -> None:
    a, b = connect(node), connect(node)
    join_presence(node, a, "presence-c", "a")
    join_presence(node, b, "presence-c", "b")
    a.take(), b.take()
    send(node, a, "client-typing", {"x": 1}, "presence-c")
    assert a.take() == []
    (event,) = b.take()
    assert event == {
        "event": "client-typing",
        "channel": "presence-c",
        "data": {"x": 1},
        "user_id": "a",
    }


def test_publish_with_exclusion_and_cache(node: Node, clock: Clock) -> None:
    app = App(id="9", key="k9", secret="s")
    a, b = connect(node, app), connect(node, app)
    for s in (a, b):
        send(node, s, "pusher:subscribe", {"channel": "cache-news"})
    assert a.take()[-1]["event"] == "pusher:cache_miss"
    b.take()
    node.publish(app, "cache-news", "update", '{"v":1}', exclude=a.session.socket_id)
    assert a.take() == []
    assert b.take() == [{"event": "update", "channel": "cache-news", "data": '{"v":1}'}]
    late = connect(node, app)
    send(node, late, "pusher:subscribe", {"channel": "cache-news"})
    assert late.take() == [
        {"event": "pusher_internal:subscription_succeeded", "channel": "cache-news", "data": "{}"},
        {"event": "update", "channel": "cache-news", "data": '{"v":1}'},
    ]
    clock.now += app.cache_ttl + 1
    later = connect(node, app)
    send(node, later, "pusher:subscribe", {"channel": "cache-news"})
    assert later.take()[-1]["event"] == "pusher:cache_miss"


def test_subscription_count_events(node: Node) -> None:
    a, b = connect(node), connect(node)
    send(node, a, "pusher:subscribe", {"channel": "counted"})
    assert a.take()[-1] == {
        "event": "pusher_internal:subscription_count",
        "channel": "counted",
        "data": '{"subscription_count":1}',
    }
    send(node, b, "pusher:subscribe", {"channel": "counted"})
    assert json.loads(a.take()[-1]["data"]) == {"subscription_count": 2}
    node.disconnect(b)
    assert json.loads(a.take()[-1]["data"]) == {"subscription_count": 1}


def test_double_subscribe_and_stats(node: Node) -> None:
    a = connect(node)
    send(node, a, "pusher:subscribe", {"channel": "news"})
    send(node, a, "pusher:subscribe", {"channel": "news"})
    events = a.events()
    assert events.count("pusher_internal:subscription_succeeded") == 2
    stats = asyncio.run(queries.channel_stats(node, APP))
    assert stats["news"].subscription_count == 1
    send(node, a, "pusher:unsubscribe", {"channel": "news"})
    assert asyncio.run(queries.channel_stats(node, APP)) == {}


def test_signin_watchlist_and_terminate(node: Node) -> None:
    watcher, user = connect(node), connect(node)

    def sign(sock: FakeSocket, user_data: dict[str, Any]) -> None:
        text = json.dumps(user_data)
        auth = signatures.user_auth("key", "secret", sock.session.socket_id, text)
        send(node, sock, "pusher:signin", {"auth": auth, "user_data": text})

    sign(watcher, {"id": "w", "watchlist": ["u"]})
    assert watcher.take()[0]["event"] == "pusher:signin_success"
    sign(user, {"id": "u"})
    online = watcher.take()
    assert online[0]["event"] == "pusher_internal:watchlist_events"
    assert json.loads(online[0]["data"]) == {"events": [{"name": "online", "user_ids": ["u"]}]}
    send(node, user, "pusher:subscribe", {"channel": "#server-to-user-u"})
    user.take()
    node.publish(APP, "#server-to-user-u", "hello", "{}")
    assert user.take()[0]["event"] == "hello"
    assert node.terminate_user(APP, "u") == 1
    assert user.closed is not None and user.closed[0] == 4009
    node.disconnect(user)
    assert json.loads(watcher.take()[0]["data"])["events"][0]["name"] == "offline"
