"""Tearing a socket down costs what that socket holds, never what its app holds: a storm of
signed-in sockets with full watchlists leaving must not block the loop (a node that stops
answering for ``node_timeout`` is declared dead by its peers)."""

from __future__ import annotations

import asyncio
import gc
import json
import time

from ressonance.models import App
from ressonance.node.node import Node
from ressonance.protocol import signatures
from ressonance.scaling.memory import MemoryBroker
from tests.node.fakes import Clock, FakeSocket

APP = App(id="1", key="key", secret="secret")
WATCHLIST = 100
BUDGET = 15.0  # seconds: a quadratic teardown is cut short here instead of running for minutes


def signed_in_node(count: int) -> tuple[Node, list[FakeSocket]]:
    """``count`` sockets, each signed in as its own user with 100 distinct watched ids."""
    node = Node(MemoryBroker(), clock=Clock())
    asyncio.run(node.start())
    sockets = []
    for i in range(count):
        sock = FakeSocket()
        node.connect(sock, APP)
        watchlist = [f"w{i}-{j}" for j in range(WATCHLIST)]
        text = json.dumps({"id": f"u{i}", "watchlist": watchlist})
        auth = signatures.user_auth("key", "secret", sock.session.socket_id, text)
        node.receive(
            sock, json.dumps({"event": "pusher:signin", "data": {"auth": auth, "user_data": text}})
        )
        sockets.append(sock)
    return node, sockets


def teardown(count: int) -> tuple[float, float, int]:
    """(seconds per socket on average, worst single socket, sockets torn down in the budget),
    in CPU time of this process with the collector paused: the teardown's own cost, not the
    other processes' of a shared machine."""
    node, sockets = signed_in_node(count)
    worst, done = 0.0, 0
    gc.disable()
    try:
        start = time.process_time()
        for sock in sockets:
            before = time.process_time()
            node.disconnect(sock)
            worst = max(worst, time.process_time() - before)
            done += 1
            if time.process_time() - start > BUDGET:
                break
        total = time.process_time() - start
    finally:
        gc.enable()
    state = node.hub.get(APP.id)
    if done == count:
        assert state is not None and not state.users and not state.watchers and not state.sockets
    return total / done, worst, done


def test_signed_in_teardown_is_linear_and_never_blocks() -> None:
    small_avg, _, _ = teardown(300)
    avg, worst, done = teardown(4000)
    print(
        f"teardown: {avg * 1e6:.0f} us/socket (300 sockets: {small_avg * 1e6:.0f}), "
        f"worst {worst * 1e3:.2f} ms, {done}/4000 in budget"
    )
    assert done == 4000, f"only {done} of 4000 sockets torn down in {BUDGET} s"
    assert worst < 0.02, f"one socket's teardown blocked the loop {worst * 1e3:.1f} ms"
    # 13x the sockets: linear teardown keeps the cost per socket (generous margin for noise)
    assert avg < max(small_avg * 4, 200e-6), (avg, small_avg)
