"""The cluster link seen from the node: a node that did not run for a while drops nobody for
it, a node dropped as silent that turns out alive is asked for its state until it comes, and
readiness and HTTP publishes follow the link. Nodes in one process on a memory bus, with a
manual clock (the same over Redis and NATS: tests/integration/test_cluster_freeze.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from ressonance.node import queries
from ressonance.node.node import Node
from ressonance.node.peers import STALLED
from ressonance.scaling.memory import MemoryBroker, MemoryBus
from tests.node.fakes import Clock, FakeSocket
from tests.node.test_cluster import make_node
from tests.node.test_node import APP, connect, join_presence

TIMEOUT = 10  # make_node's node_timeout


def users(node: Node) -> set[str]:
    return set(asyncio.run(queries.channel_users(node, APP, "presence-room")))


def member_events(sock: FakeSocket) -> list[tuple[str, str]]:
    return [
        (str(f["event"]).rpartition("_")[2], json.loads(str(f["data"]))["user_id"])
        for f in sock.take()
        if str(f["event"]).startswith("pusher_internal:member_")
    ]


def sent_kinds(node: Node) -> list[str]:
    """Record the kinds of control messages ``node`` sends from now on."""
    kinds: list[str] = []
    real = node.broker.send

    def send(payload: str) -> None:
        kinds.append(json.loads(payload)["t"])
        real(payload)

    node.broker.send = send  # type: ignore[method-assign]
    return kinds


def test_a_node_that_did_not_run_drops_nobody_for_it(bus: MemoryBus, clock: Clock) -> None:
    """n1 is stopped (SIGSTOP) for longer than node_timeout: when it runs again its tick may
    come before the others' heartbeats that waited for it; it must not take their silence for
    theirs. Real silence still counts after."""
    n1, n2 = make_node(bus, clock, "n1"), make_node(bus, clock, "n2")
    watcher = connect(n1)
    join_presence(n1, watcher, "presence-room", "w")
    join_presence(n2, connect(n2), "presence-room", "other")
    watcher.take()
    clock.now += 15
    n1.heartbeat()  # first, before n2's traffic
    assert n1.stalls == 1
    for _ in range(TIMEOUT + 2):
        clock.now += 1
        n2.heartbeat()
        n1.heartbeat()
    assert member_events(watcher) == []
    assert users(n1) == {"w", "other"}
    asyncio.run(n2.broker.close())  # now n2 is silent for real
    for _ in range(TIMEOUT + 2):
        clock.now += 1
        n1.heartbeat()
    assert member_events(watcher) == [("removed", "other")]
    assert n1.stalls == 1


def test_a_short_pause_between_ticks_is_no_stall(bus: MemoryBus, clock: Clock) -> None:
    node = make_node(bus, clock, "n1")
    clock.now += STALLED - 0.1
    node.heartbeat()
    assert node.stalls == 0


def test_a_node_dropped_as_silent_is_asked_for_its_state_until_it_comes(
    bus: MemoryBus, clock: Clock
) -> None:
    """n1 drops n2, which did not run for a while; n2's next heartbeat makes n1 ask for its
    state (how n2 learns it was dropped), and n1 asks again with each heartbeat until the
    state comes: here the first answer is lost."""
    n1, n2 = make_node(bus, clock, "n1"), make_node(bus, clock, "n2")
    watcher = connect(n1)
    join_presence(n1, watcher, "presence-room", "w")
    join_presence(n2, connect(n2), "presence-room", "back")
    watcher.take()
    for _ in range(TIMEOUT + 2):  # n2 does not run
        clock.now += 1
        n1.heartbeat()
    assert member_events(watcher) == [("removed", "back")]
    assert "n2" not in n1.view.peers

    broker = n1.broker
    assert isinstance(broker, MemoryBroker)
    lost: list[str] = []

    class LoseFirstState:
        def __getattr__(self, name: str) -> Any:
            return getattr(n1, name)

        def control(self, origin: str, payload: str) -> None:
            if json.loads(payload)["t"] == "state" and not lost:
                lost.append(payload)
                return
            n1.control(origin, payload)

    broker.handler = LoseFirstState()  # type: ignore[assignment]
    asked = sent_kinds(n1)
    clock.now += 1
    n2.heartbeat()  # n2 runs again: its heartbeat, n1's request, n2's state (lost)
    assert asked.count("sync") == 1 and len(lost) == 1
    assert users(n1) == {"w"}
    clock.now += 1
    n2.heartbeat()  # asked again
    assert asked.count("sync") == 2
    assert users(n1) == {"w", "back"}
    assert member_events(watcher) == [("added", "back")]
    clock.now += 1
    n2.heartbeat()  # known again: no more requests
    assert asked.count("sync") == 2


def test_no_heartbeats_while_the_link_is_down(bus: MemoryBus, clock: Clock) -> None:
    """They would wait in the outbox for nothing: the re-announcement stands for them."""
    node = make_node(bus, clock, "n1")
    kinds = sent_kinds(node)
    node.link_changed(False)
    for _ in range(3):
        clock.now += 1
        node.heartbeat()
    assert kinds == []
    node.link_changed(True)
    clock.now += 1
    node.heartbeat()
    assert kinds == ["hello", "state", "hb"]


def test_ready_until_draining_or_the_link_is_down_longer_than_node_timeout(
    bus: MemoryBus, clock: Clock
) -> None:
    node = make_node(bus, clock, "n1")
    assert node.unready() == []
    node.link_changed(False)
    clock.now += TIMEOUT
    assert node.unready() == []  # a short outage is no reason
    clock.now += 2
    assert node.unready() == ["broker link down for 12 s"]
    node.link_changed(True)
    assert node.unready() == []
    node.announce_drain()
    assert node.unready() == ["draining"]


def test_a_node_whose_broker_was_unreachable_at_start_counts_the_outage_from_then(
    clock: Clock,
) -> None:
    class Unreachable(MemoryBroker):
        connected = False

    node = Node(Unreachable("n1"), clock=clock, node_timeout=TIMEOUT)
    asyncio.run(node.start())
    clock.now += TIMEOUT + 1
    assert node.unready() == ["broker link down for 11 s"]
    node.link_changed(True)  # the first connect, late
    assert node.unready() == []


def test_http_publishes_are_refused_and_counted_while_the_outbox_is_full(
    bus: MemoryBus, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ressonance.node")
    node = make_node(bus, clock, "n1")
    assert node.publishable()
    node.broker.full = True  # type: ignore[misc]
    assert [node.publishable() for _ in range(3)] == [False] * 3
    node.broker.full = False  # type: ignore[misc]
    assert node.publishable()
    assert node.publishes_refused == 3
    logged = [r.getMessage() for r in caplog.records if r.name == "ressonance.node"]
    assert len(logged) == 2 and "503" in logged[0] and "3 refused" in logged[1]
