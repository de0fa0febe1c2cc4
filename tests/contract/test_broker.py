"""The Broker contract (ressonance.scaling.base), run against every implementation."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.contract.conftest import Cluster, eventually, quiet
from tests.support.services import nats_server

pytestmark = pytest.mark.asyncio
NETWORKED = pytest.mark.parametrize("cluster", ["redis", "nats"], indirect=True)


async def test_a_publication_reaches_the_others_intact_and_never_its_sender(
    cluster: Cluster,
) -> None:
    a, ra = await cluster.started("a")
    _, rb = await cluster.started("b")
    message = json.dumps({"event": "e", "channel": "private-x", "data": '{"n":1}'})
    a.publish("1001", "private-x", message, "123.456")
    a.publish("1001", "presence-y", "{}", None)
    await eventually(lambda: len(rb.deliveries) == 2)
    assert rb.deliveries == [
        ("1001", "private-x", message, "123.456"),
        ("1001", "presence-y", "{}", None),
    ]
    await quiet()
    assert ra.deliveries == [] and ra.controls == []


async def test_control_messages_arrive_with_their_origin(cluster: Cluster) -> None:
    a, ra = await cluster.started("node-a")
    _, rb = await cluster.started("node-b")
    a.send('{"hello":1}')
    a.send("")
    await eventually(lambda: len(rb.controls) == 2)
    assert rb.controls == [("node-a", '{"hello":1}'), ("node-a", "")]
    await quiet()
    assert ra.controls == []


async def test_order_per_sender_is_kept_over_a_thousand_mixed_messages(cluster: Cluster) -> None:
    a, _ = await cluster.started("a")
    _, rb = await cluster.started("b")
    for n in range(1000):
        if n % 3:
            a.publish("1001", f"c{n % 7}", str(n), None)
        else:
            a.send(str(n))
    await eventually(lambda: len(rb.deliveries) + len(rb.controls) == 1000)
    assert [int(d[2]) for d in rb.deliveries] == [n for n in range(1000) if n % 3]
    assert [int(c[1]) for c in rb.controls] == [n for n in range(1000) if not n % 3]


async def test_payloads_arrive_byte_for_byte(cluster: Cluster) -> None:
    a, _ = await cluster.started("a")
    _, rb = await cluster.started("b")
    payloads = [
        json.dumps({"text": "olá, 世界 🎉 \u2028 \\u001f"}, ensure_ascii=False),
        json.dumps({"nested": {"list": [1, 2.5, None, True], "quote": '"'}}),
        json.dumps({"big": "x" * 1_000_000}),
    ]
    for payload in payloads:
        a.publish("1001", "big", payload, None)
        a.send(payload)
    await eventually(lambda: len(rb.deliveries) == 3 and len(rb.controls) == 3)
    assert [d[2] for d in rb.deliveries] == payloads
    assert [c[1] for c in rb.controls] == payloads


async def test_frames_larger_than_an_engine_message_arrive_whole_and_in_order(
    cluster: Cluster,
) -> None:
    """A node's full state can pass NATS's 1 MiB max_payload: it is sent in fragments."""
    a, ra = await cluster.started("a")
    _, rb = await cluster.started("b")
    big = json.dumps({"members": ["ü" * 40 + str(n) for n in range(60_000)]}, ensure_ascii=False)
    assert len(big.encode()) > 3 * 1024 * 1024
    a.send("before")
    a.send(big)
    a.publish("1001", "c", big, None)
    a.send("after")
    await eventually(lambda: len(rb.controls) == 3 and len(rb.deliveries) == 1, timeout=20)
    assert rb.controls == [("a", "before"), ("a", big), ("a", "after")]
    assert rb.deliveries == [("1001", "c", big, None)]
    await quiet()
    assert ra.controls == [] and ra.deliveries == []


async def test_three_brokers_each_get_the_other_twos_traffic(cluster: Cluster) -> None:
    started = [await cluster.started(name) for name in ("a", "b", "c")]
    for broker, _ in started:
        broker.publish("1001", "room", broker.node_id, None)
        broker.send(broker.node_id)
    for broker, recorder in started:
        others = {name for name in ("a", "b", "c") if name != broker.node_id}
        await eventually(lambda r=recorder: len(r.deliveries) == 2 and len(r.controls) == 2)
        assert {d[2] for d in recorder.deliveries} == others
        assert {c[0] for c in recorder.controls} == others


async def test_connected_after_start(cluster: Cluster) -> None:
    a, _ = await cluster.started("a")
    assert a.connected
    assert a.dropped == 0


async def test_close_sends_what_was_queued(cluster: Cluster) -> None:
    a, _ = await cluster.started("a")
    _, rb = await cluster.started("b")
    for n in range(200):
        a.publish("1001", "c", str(n), None)
    a.send("bye")
    await asyncio.wait_for(a.close(), 5)
    await eventually(
        lambda: len(rb.deliveries) == 200 and rb.controls == [("a", "bye")],
        what=lambda: f"200 deliveries and a bye, got {len(rb.deliveries)} and {rb.controls}",
    )


@NETWORKED
async def test_different_prefixes_on_one_server_do_not_see_each_other(cluster: Cluster) -> None:
    a, ra = await cluster.started("a", prefix=f"{cluster.prefix}-one")
    b, rb = await cluster.started("b", prefix=f"{cluster.prefix}-two")
    _, rc = await cluster.started("c", prefix=f"{cluster.prefix}-two")
    a.publish("1001", "c", "from-a", None)
    b.send("from-b")
    await eventually(lambda: rc.controls == [("b", "from-b")])
    await quiet()
    assert ra.controls == [] and rb.deliveries == [] and rc.deliveries == []


@NETWORKED
@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_sends_while_the_server_is_down_go_out_after_it_is_back(
    cluster: Cluster, how: str
) -> None:
    assert cluster.service is not None
    a, ra = await cluster.started("a")
    b, rb = await cluster.started("b")
    getattr(cluster.service, how)()
    lost = await eventually(lambda: ra.links == [False] and rb.links == [False])
    assert not a.connected and not b.connected
    for n in range(50):
        a.publish("1001", "c", str(n), None)
    a.send("after-outage")
    cluster.service.start()
    back = time.monotonic()
    await eventually(lambda: ra.links == [False, True] and rb.links == [False, True])
    relinked = time.monotonic() - back
    await eventually(lambda: len(rb.deliveries) == 50 and rb.controls == [("a", "after-outage")])
    delivered = time.monotonic() - back
    print(
        f"{cluster.kind} {how}: link loss seen in {lost:.2f} s; after the restart, "
        f"link up in {relinked:.2f} s, queued sends delivered in {delivered:.2f} s"
    )
    assert [int(d[2]) for d in rb.deliveries] == list(range(50))
    assert a.connected and b.connected
    assert delivered < 5


@NETWORKED
async def test_a_broker_started_while_its_server_is_down_connects_when_it_is_up(
    cluster: Cluster,
) -> None:
    assert cluster.service is not None
    cluster.service.stop()
    began = time.monotonic()
    a, ra = await asyncio.wait_for(cluster.started("a"), 5)
    print(f"{cluster.kind}: start() returned in {time.monotonic() - began:.2f} s while down")
    assert not a.connected
    a.send("queued-while-down")
    cluster.service.start()
    b, rb = await cluster.started("b")
    up = await eventually(lambda: ra.links == [True] and a.connected)
    await eventually(lambda: rb.controls == [("a", "queued-while-down")])
    print(f"{cluster.kind}: connected {up:.2f} s after the server came up")
    b.publish("1001", "c", "to-a", None)
    await eventually(lambda: ra.deliveries == [("1001", "c", "to-a", None)])


async def test_nats_pieces_fit_a_server_with_a_lower_max_payload(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The fragment size follows the max_payload the NATS server announces."""
    with nats_server(tmp_path_factory.mktemp("nats-small"), max_payload=64 * 1024) as service:
        cluster = Cluster("nats", service)
        try:
            a, _ = await cluster.started("a")
            _, rb = await cluster.started("b")
            big = "é" * 300_000  # 600 KB of UTF-8: ten times the server's limit
            a.send(big)
            await eventually(lambda: len(rb.controls) == 1, timeout=20)
            assert rb.controls == [("a", big)]
            assert a.dropped == 0
        finally:
            await cluster.close()
