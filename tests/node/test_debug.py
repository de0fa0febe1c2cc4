"""The debug console's feed (node/debug.py): a watched app's entries in order with their fields,
cluster-wide with each node's id; nothing listens or records while nobody watches; leases end;
the rate limit, the ring and the long poll are bounded, and what they lose is counted."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from ressonance.models import App
from ressonance.node import debug
from ressonance.node.node import Node
from ressonance.scaling.memory import MemoryBus
from tests.node.fakes import Clock
from tests.node.test_cluster import auth_subscribe_private, make_node
from tests.node.test_node import APP, connect, send

OTHER = App(id="2", key="key2", secret="secret2")


@pytest.fixture
def nodes(bus: MemoryBus, clock: Clock) -> list[Node]:
    return [make_node(bus, clock, name) for name in ("n1", "n2", "n3")]


def started(node: Node) -> int:
    """A viewer starts watching APP on ``node``: the ``after`` of its next read."""
    node.debug.watch(APP.id)
    entries, after, dropped = node.debug.read(APP.id, 0)
    assert entries == [] and dropped == 0
    return after


def kinds(entries: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in entries]


def test_nothing_listens_or_is_recorded_while_nobody_watches(nodes: list[Node]) -> None:
    n1, n2, _ = nodes
    sock = connect(n1)
    send(n1, sock, "pusher:subscribe", {"channel": "news"})
    n2.publish(APP, "news", "e", "{}")
    assert all(n.events.listeners == () for n in nodes)
    assert all(n.debug.rings == {} and n.debug.remote == {} for n in nodes)
    assert n1.debug.read(APP.id, 0) == ([], debug.START, 0)


def test_a_watched_apps_entries_come_in_order_with_their_fields(
    nodes: list[Node], clock: Clock
) -> None:
    n1 = nodes[0]
    after = started(n1)
    assert n1.events.listeners != ()
    a, b = connect(n1), connect(n1)
    sid = a.session.socket_id
    send(n1, a, "pusher:subscribe", {"channel": "news"})
    n1.publish(APP, "news", "update", '{"n":1}')
    auth_subscribe_private(n1, a, "private-chat")
    auth_subscribe_private(n1, b, "private-chat")
    send(n1, a, "client-typing", {"x": "é"}, "private-chat")
    n1.fail(b, 4301, "Client event rejected")
    send(n1, a, "pusher:unsubscribe", {"channel": "news"})
    n1.disconnect(b)
    other = connect(n1, OTHER)  # an app nobody watches
    send(n1, other, "pusher:subscribe", {"channel": "news"})
    entries, after2, dropped = n1.debug.read(APP.id, after)
    assert kinds(entries) == [
        "connection",
        "connection",
        "subscribed",
        "occupied",
        "api_message",
        "subscribed",
        "occupied",
        "subscribed",
        "client_event",
        "error",
        "unsubscribed",
        "vacated",
        "unsubscribed",
        "disconnection",
    ]
    assert dropped == 0 and after2 == entries[-1]["seq"]
    assert [e["seq"] for e in entries] == list(range(after + 1, after2 + 1))
    published = entries[4]
    assert published == {
        "seq": after + 5,
        "t": published["t"],
        "node": "n1",
        "kind": "api_message",
        "channel": "news",
        "socket_id": None,
        "event": "update",
        "data": '{"n":1}',
        "code": None,
        "message": None,
    }
    assert abs(published["t"] - time.time()) < 60  # Unix seconds
    assert entries[0]["socket_id"] == sid and entries[2]["channel"] == "news"
    client = entries[8]
    assert (client["socket_id"], client["event"], json.loads(client["data"])) == (
        sid,
        "client-typing",
        {"x": "é"},
    )
    error = entries[9]
    assert (error["socket_id"], error["code"], error["message"]) == (
        b.session.socket_id,
        4301,
        "Client event rejected",
    )
    assert n1.debug.read(APP.id, after2) == ([], after2, 0)
    assert n1.debug.errors(APP.id) == [
        {
            "t": error["t"],
            "node": "n1",
            "socket_id": b.session.socket_id,
            "code": 4301,
            "message": "Client event rejected",
        }
    ]
    assert n1.debug.errors(OTHER.id) == []
    assert n1.debug.read(OTHER.id, 0) == ([], debug.START, 0)


def test_long_data_is_clipped(nodes: list[Node]) -> None:
    n1 = nodes[0]
    after = started(n1)
    n1.publish(APP, "news", "big", "x" * 10_000)
    ((entry,), _, _) = n1.debug.read(APP.id, after)
    assert entry["data"] == "x" * debug.DATA_LIMIT + "…"


def test_the_lease_ends_and_the_listener_goes(nodes: list[Node], clock: Clock) -> None:
    n1 = nodes[0]
    after = started(n1)
    clock.now += debug.LEASE - 1
    n1.debug.watch(APP.id)  # a poll renews it
    clock.now += debug.LEASE - 1
    n1.publish(APP, "news", "e", "{}")
    assert len(n1.debug.read(APP.id, after)[0]) == 1
    clock.now += 2
    n1.publish(APP, "news", "e", "{}")  # expired lazily, on the event: not recorded
    assert n1.events.listeners == ()
    entries, _, dropped = n1.debug.read(APP.id, after)
    assert entries == [] and dropped == 1  # what the viewer had not read is gone
    # a viewer that comes back starts from now, never before what it saw
    assert started(n1) > after


def test_housekeeping_expires_the_leases(nodes: list[Node], clock: Clock) -> None:
    n1, n2, n3 = nodes
    started(n1)
    assert all(n.events.listeners != () for n in nodes)
    clock.now += debug.LEASE + 1
    for node in nodes:
        node.housekeeping()
    assert all(n.events.listeners == () for n in nodes)
    assert n2.debug.remote == {} and n3.debug.remote == {}


def test_a_publish_on_another_node_reaches_the_viewer_with_that_nodes_id(
    nodes: list[Node],
) -> None:
    n1, n2, n3 = nodes
    after = started(n1)
    n2.publish(APP, "news", "update", '{"from":2}')
    sock = connect(n3)
    send(n3, sock, "pusher:subscribe", {"channel": "news"})
    n3.publish(OTHER, "news", "e", "{}")  # another app: not forwarded
    entries, _, dropped = n1.debug.read(APP.id, after)
    assert [(e["node"], e["kind"]) for e in entries] == [
        ("n2", "api_message"),
        ("n3", "connection"),
        ("n3", "subscribed"),
        ("n3", "occupied"),
    ]
    assert entries[0]["data"] == '{"from":2}' and entries[2]["channel"] == "news"
    assert entries[1]["socket_id"] == sock.session.socket_id and dropped == 0
    assert n2.debug.rings == {} and n3.debug.rings == {}  # they only forward


def test_forwarding_stops_when_the_lease_ends_and_renewals_keep_it(
    nodes: list[Node], clock: Clock
) -> None:
    n1, n2, _ = nodes
    after = started(n1)
    for _ in range(4):  # the viewer stays: renewed every RENEW seconds by n1's housekeeping
        clock.now += debug.RENEW
        n1.debug.watch(APP.id)
        n1.housekeeping()
        n2.housekeeping()
    n2.publish(APP, "news", "e", "{}")
    entries, after, _ = n1.debug.read(APP.id, after)
    assert kinds(entries) == ["api_message"]
    clock.now += debug.LEASE + 1  # the viewer left: n2 stops on its next event
    n2.publish(APP, "news", "e", "{}")
    assert n2.events.listeners == () and n2.debug.forwarded == 1


def test_the_rate_limit_drops_and_counts(nodes: list[Node], clock: Clock) -> None:
    n1, n2, _ = nodes
    after = started(n1)
    for i in range(150):
        n2.publish(APP, "news", "e", str(i))
    entries, after, dropped = n1.debug.read(APP.id, after)
    assert len(entries) == debug.BURST and dropped == 0
    assert n2.debug.dropped == 50
    clock.now += 0.5  # 50 more may go
    n2.publish(APP, "news", "e", "late")
    entries, after, dropped = n1.debug.read(APP.id, after)
    assert [e["data"] for e in entries] == ["late"] and dropped == 50


def test_no_forwarding_while_a_node_of_an_older_release_is_in_the_cluster(
    nodes: list[Node],
) -> None:
    n1, n2, _ = nodes
    after = started(n1)
    n2.control("n9", '{"t":"hb","s":0,"r":"","n":{}}')  # no "v": version 1
    n2.publish(APP, "news", "e", "{}")
    assert n1.debug.read(APP.id, after)[0] == [] and n2.debug.dropped == 1
    n2.view.drop("n9")
    n2.publish(APP, "news", "e", "{}")
    entries, _, dropped = n1.debug.read(APP.id, after)
    assert kinds(entries) == ["api_message"] and dropped == 1


def test_the_ring_bound_drops_and_counts(nodes: list[Node]) -> None:
    n1 = nodes[0]
    n1.debug.ring_size = 5
    after = started(n1)
    for i in range(8):
        n1.publish(APP, "news", "e", str(i))
    entries, last, dropped = n1.debug.read(APP.id, after)
    assert [e["data"] for e in entries] == ["3", "4", "5", "6", "7"] and dropped == 3
    entries, _, dropped = n1.debug.read(APP.id, last - 2)
    assert [e["data"] for e in entries] == ["6", "7"] and dropped == 0


def test_wait_answers_on_a_new_entry_or_at_the_timeout(
    nodes: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    n1 = nodes[0]

    async def scenario() -> None:
        after = started(n1)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, n1.publish, APP, "news", "e", "{}")
        began = loop.time()
        entries, after, _ = await asyncio.wait_for(n1.debug.wait(APP.id, after, 10), 5)
        assert kinds(entries) == ["api_message"] and loop.time() - began < 5
        began = loop.time()
        found = await asyncio.wait_for(n1.debug.wait(APP.id, after, 0.1), 5)
        assert found == ([], after, 0) and loop.time() - began >= 0.09
        assert n1.debug.rings[APP.id].waiters == []
        # after 0: from now on, and the first entry ends the wait
        loop.call_later(0.05, n1.publish, APP, "news", "f", "{}")
        entries, _, _ = await asyncio.wait_for(n1.debug.wait(APP.id, 0, 10), 5)
        assert [e["event"] for e in entries] == ["f"]
        # a wait is bounded whatever is asked
        monkeypatch.setattr(debug, "MAX_WAIT", 0.1)
        found = await asyncio.wait_for(n1.debug.wait(APP.id, 0, 1000), 5)
        assert found[0] == []

    asyncio.run(scenario())


def test_a_debug_entry_of_a_newer_release_is_shown(nodes: list[Node]) -> None:
    n1 = nodes[0]
    after = started(n1)
    newer = {
        "t": "debug",
        "s": 0,
        "v": 3,
        "a": "1",
        "k": "webhook",
        "w": 1.7e9,
        "c": "news",
        "d": "y" * 5000,
        "x": 2,
        "z": {"new": True},
    }
    n1.control("n9", json.dumps(newer))
    n1.control("n9", '{"t":"watch2","s":1,"a":"1"}')  # a kind of a newer release: ignored
    n1.control("n9", '{"t":"debug","s":1,"a":"1","k":"x"}')  # malformed: no time
    ((entry,), _, dropped) = n1.debug.read(APP.id, after)
    assert (entry["node"], entry["kind"], entry["channel"], entry["t"]) == (
        "n9",
        "webhook",
        "news",
        1.7e9,
    )
    assert len(entry["data"]) == debug.DATA_LIMIT + 1 and dropped == 2


def test_heartbeats_carry_each_nodes_stats(nodes: list[Node]) -> None:
    n1, n2, _ = nodes
    n2.link.stats_source = lambda: {"messages_in": 12.0, "cpu": 3.5, "broker_up": 1.0}
    n2.heartbeat()
    assert n1.view.peers["n2"].stats == {"messages_in": 12.0, "cpu": 3.5, "broker_up": 1.0}
    assert n2.view.local.stats == {"messages_in": 12.0, "cpu": 3.5, "broker_up": 1.0}
    assert n1.view.peers["n3"].stats == {}  # no source: none

    def broken() -> dict[str, float]:
        raise RuntimeError("boom")

    n2.link.stats_source = broken
    n2.heartbeat()  # still goes out, with the last stats
    assert n1.view.peers["n2"].stats == {"messages_in": 12.0, "cpu": 3.5, "broker_up": 1.0}
