"""Subscribe churn must not be an amplifier: one socket subscribing and unsubscribing as fast as
it can reaches the others as a bounded number of frames (a per-socket subscription rate, a cap
on channels per socket, presence and count events coalesced per loop tick)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ressonance.models import App
from ressonance.node import queries
from ressonance.node.node import Node
from ressonance.protocol import signatures
from ressonance.scaling.memory import MemoryBroker
from tests.node.fakes import Clock, FakeSocket
from tests.node.test_node import connect as connect_to

APP = App(id="1", key="key", secret="secret", subscription_count=True, max_presence_members=200)
ROOM = "presence-room"
OTHERS = 99
PAIRS = 1000


def make_node(clock: Clock) -> Node:
    node = Node(MemoryBroker(), clock=clock)
    asyncio.run(node.start())
    return node


def connect(node: Node, app: App = APP) -> FakeSocket:
    return connect_to(node, app)  # this module's app: subscription counts, 200 members


def send(node: Node, sock: FakeSocket, event: str, data: Any) -> None:
    node.receive(sock, json.dumps({"event": event, "data": data}))


def presence_subscribe(node: Node, sock: FakeSocket, user: str, name: str | None = None) -> None:
    cd = json.dumps({"user_id": user, "user_info": {"name": name or user}})
    auth = signatures.channel_auth("key", "secret", sock.session.socket_id, ROOM, cd)
    send(node, sock, "pusher:subscribe", {"channel": ROOM, "auth": auth, "channel_data": cd})


def crowd(node: Node, channel: str | None = None) -> list[FakeSocket]:
    """99 other sockets in the room (or in a public ``channel``), their frames taken."""
    others = [connect(node) for _ in range(OTHERS)]
    for i, sock in enumerate(others):
        if channel is None:
            presence_subscribe(node, sock, f"member-{i}")
        else:
            send(node, sock, "pusher:subscribe", {"channel": channel})
    for sock in others:
        sock.take()
    return others


def test_presence_churn_in_one_second_reaches_others_bounded() -> None:
    """One member re-using its valid signature: 1,000 join/leave pairs, the join and the leave
    in loop ticks of their own, within one second of the clock. Before: 2 frames per pair to
    each of the 99 others."""
    clock = Clock()
    node = make_node(clock)
    others = crowd(node)
    churner = connect(node)

    async def churn() -> None:
        for _ in range(PAIRS):
            presence_subscribe(node, churner, "churner")
            await asyncio.sleep(0)
            send(node, churner, "pusher:unsubscribe", {"channel": ROOM})
            await asyncio.sleep(0)
            clock.now += 0.5 / PAIRS
        await asyncio.sleep(0)

    asyncio.run(churn())
    received = sum(len(sock.frames) for sock in others)
    print(f"presence churn: {received} frames to {OTHERS} others for {PAIRS} pairs")
    limit = APP.max_subscriptions_per_second
    assert received <= 2 * limit * OTHERS
    refused = [f for f in churner.frames if f["event"] == "pusher:subscription_error"]
    assert len(refused) == PAIRS - limit
    assert refused[0]["data"]["status"] == 4301
    errors = [f for f in churner.frames if f["event"] == "pusher:error"]
    assert len(errors) == PAIRS - limit and errors[0]["data"]["code"] == 4301
    assert churner.closed is None  # 4301 is never a close


def test_join_and_leave_within_one_tick_send_nothing_to_others() -> None:
    clock = Clock()
    node = make_node(clock)
    others = crowd(node)
    churner, late = connect(node), connect(node)

    async def one_tick() -> None:
        for _ in range(20):
            presence_subscribe(node, churner, "churner")
            send(node, churner, "pusher:unsubscribe", {"channel": ROOM})
        presence_subscribe(node, churner, "stays")
        presence_subscribe(node, late, "late")  # sees "stays" in its snapshot, not as added
        send(node, others[0], "pusher:unsubscribe", {"channel": ROOM})
        await asyncio.sleep(0)

    asyncio.run(one_tick())
    seen = [(f["event"], json.loads(f["data"]).get("user_id")) for f in others[1].frames]
    assert seen == [
        ("pusher_internal:member_added", "stays"),
        ("pusher_internal:member_added", "late"),
        ("pusher_internal:member_removed", "member-0"),
    ]
    late_seen = [f["event"] for f in late.frames]
    assert late_seen == [
        "pusher_internal:subscription_succeeded",
        "pusher_internal:member_removed",
    ]
    snapshot = json.loads(late.frames[0]["data"])["presence"]
    assert "stays" in snapshot["ids"] and "late" in snapshot["ids"]
    assert [f["event"] for f in churner.frames].count("pusher_internal:member_added") == 1


def member_events(sock: FakeSocket) -> list[tuple[str, str, object]]:
    out = []
    for f in sock.frames:
        if f["event"].startswith("pusher_internal:member_"):
            data = json.loads(f["data"])
            out.append((f["event"].rsplit("_", 1)[1], data["user_id"], data.get("user_info")))
    return out


def test_leaving_and_coming_back_as_before_within_one_tick_sends_nothing() -> None:
    """A client that unsubscribes and subscribes again in one go (a resubscribe, the closed
    loop of the presence-churn bench): the others never saw it leave."""
    node = make_node(Clock())
    others = crowd(node)
    back = connect(node)
    presence_subscribe(node, back, "back")
    asyncio.run(asyncio.sleep(0))
    for sock in [*others, back]:
        sock.take()

    async def one_tick() -> None:
        send(node, back, "pusher:unsubscribe", {"channel": ROOM})
        presence_subscribe(node, back, "back")
        await asyncio.sleep(0)

    asyncio.run(one_tick())
    assert all(member_events(sock) == [] for sock in others)
    assert [f["event"] for f in back.frames] == ["pusher_internal:subscription_succeeded"]
    assert "back" in json.loads(back.frames[0]["data"])["presence"]["ids"]


def test_coming_back_with_other_user_info_is_removed_then_added_for_the_others() -> None:
    node = make_node(Clock())
    others = crowd(node)
    back = connect(node)
    presence_subscribe(node, back, "back", "Old")
    asyncio.run(asyncio.sleep(0))
    for sock in [*others, back]:
        sock.take()

    async def one_tick() -> None:
        send(node, back, "pusher:unsubscribe", {"channel": ROOM})
        presence_subscribe(node, back, "back", "New")
        late = connect(node)  # joins after the comeback, in the same tick
        presence_subscribe(node, late, "late")
        await asyncio.sleep(0)
        # the late socket's snapshot has the new info; it hears nothing more of "back"
        snapshot = json.loads(late.frames[0]["data"])["presence"]
        assert snapshot["hash"]["back"] == {"name": "New"}
        assert [e for e in member_events(late) if e[1] == "back"] == []

    asyncio.run(one_tick())
    assert member_events(others[0]) == [
        ("removed", "back", None),
        ("added", "back", {"name": "New"}),
        ("added", "late", {"name": "late"}),
    ]
    # the socket that came back has the new info from its own snapshot, and no event of itself
    assert [e for e in member_events(back) if e[1] == "back"] == []
    snapshot = json.loads(back.frames[0]["data"])["presence"]
    assert snapshot["hash"]["back"] == {"name": "New"}


def test_count_churn_on_a_public_channel_is_once_per_tick() -> None:
    """An unauthenticated socket churning a public channel with subscription_count on: the
    99 others get at most one count per loop tick, not two per pair."""
    clock = Clock()
    node = make_node(clock)
    others = crowd(node, "news")
    churner = connect(node)

    async def churn() -> None:
        for _ in range(50):
            for _ in range(20):  # 20 pairs per tick
                send(node, churner, "pusher:subscribe", {"channel": "news"})
                send(node, churner, "pusher:unsubscribe", {"channel": "news"})
            await asyncio.sleep(0)
            clock.now += 0.01

    asyncio.run(churn())
    counts = [f for f in others[0].frames if f["event"] == "pusher_internal:subscription_count"]
    print(f"count churn: {len(counts)} count frames per other socket for 1,000 pairs")
    assert len(counts) <= 50
    assert json.loads(counts[-1]["data"]) == {"subscription_count": OTHERS}


def test_channels_per_connection_cap() -> None:
    clock = Clock()
    node = make_node(clock)
    sock = connect(node)
    for i in range(200):
        send(node, sock, "pusher:subscribe", {"channel": f"ch-{i}"})
        clock.now += 0.05  # 20 per second: under the rate limit
    refused = [f for f in sock.frames if f["event"] == "pusher:subscription_error"]
    print(f"channel cap: {200 - len(refused)} of 200 channels held by one socket")
    assert len(refused) == 200 - APP.max_channels_per_connection
    assert refused[0]["channel"] == f"ch-{APP.max_channels_per_connection}"
    error = refused[0]["data"]
    assert error["type"] == "LimitReached" and error["status"] == 4100
    assert len(asyncio.run(queries.channel_stats(node, APP))) == APP.max_channels_per_connection
    send(node, sock, "pusher:unsubscribe", {"channel": "ch-0"})
    sock.take()
    send(node, sock, "pusher:subscribe", {"channel": "ch-new"})
    assert sock.take()[0]["event"] == "pusher_internal:subscription_succeeded"
