"""The networked brokers' link, judged by what comes back (ressonance.scaling.wire, Liveness):
a link that stops delivering is given up and opened again, one that is only slow to be read
(this process did not run) is kept, and every change is counted."""

from __future__ import annotations

import asyncio
import time

import pytest

from ressonance.scaling.wire import LINK_TIMEOUT, WireBroker
from tests.contract.conftest import Cluster, eventually

pytestmark = pytest.mark.asyncio
NETWORKED = pytest.mark.parametrize("cluster", ["redis", "nats"], indirect=True)


@NETWORKED
async def test_a_link_that_hands_nothing_on_is_given_up_and_opened_again(
    cluster: Cluster,
) -> None:
    """The reader stops handing frames on (as a reader task that died did) while the writer
    still writes: the link goes down within seconds and comes back; nothing is lost after."""
    a, ra = await cluster.started("a")
    b, rb = await cluster.started("b")
    assert isinstance(a, WireBroker)
    a.received = lambda frame: None  # type: ignore[method-assign]
    lost = await eventually(lambda: ra.links[:1] == [False], timeout=3 * LINK_TIMEOUT + 2)
    del a.received  # the new link reads again (NATS may have reconnected already)
    await eventually(lambda: ra.links == [False, True])
    await asyncio.sleep(LINK_TIMEOUT + 1)  # and stays up
    assert ra.links == [False, True] and a.connected
    print(f"{cluster.kind}: a deaf link given up after {lost:.1f} s")
    assert lost < 2 * LINK_TIMEOUT + 1.5  # a probe after at most 1 s, then LINK_TIMEOUT
    assert (a.link_losses, a.reconnects) == (1, 1)
    assert rb.links == [] and b.link_losses == 0
    b.publish("1001", "c", "after", None)
    await eventually(lambda: ("1001", "c", "after", None) in ra.deliveries)


@NETWORKED
async def test_a_server_that_hangs_is_given_up_and_the_link_comes_back(cluster: Cluster) -> None:
    """The server stops answering (SIGSTOP) with its connections open: no error comes, only
    silence. Both links go down, and come back once it answers again."""
    assert cluster.service is not None
    a, ra = await cluster.started("a")
    b, rb = await cluster.started("b")
    cluster.service.pause()
    try:
        lost = await eventually(lambda: ra.links == [False] and rb.links == [False])
        a.send("queued")
    finally:
        cluster.service.resume()
    await eventually(lambda: ra.links == [False, True] and rb.links == [False, True])
    await eventually(lambda: ("a", "queued") in rb.controls)
    print(f"{cluster.kind}: a hung server given up after {lost:.1f} s")
    assert lost < 2 * LINK_TIMEOUT + 1.5
    assert (a.link_losses, a.reconnects, b.link_losses, b.reconnects) == (1, 1, 1, 1)


@NETWORKED
async def test_a_process_that_did_not_run_keeps_its_link_and_gets_what_was_sent(
    cluster: Cluster,
) -> None:
    """The whole process stops for longer than LINK_TIMEOUT (here a blocking sleep; SIGSTOP in
    tests/integration/test_cluster_freeze.py): what the server kept for it meanwhile is read,
    not taken for a dead link."""
    a, ra = await cluster.started("a")
    b, rb = await cluster.started("b")
    for n in range(5):
        a.publish("1001", "c", f"before-{n}", None)
        await asyncio.sleep(0.01)  # some written, some echoed, some in flight
    time.sleep(LINK_TIMEOUT + 1.5)  # the event loop does not run: the point
    for n in range(5):
        b.publish("1001", "c", f"after-{n}", None)
    await eventually(lambda: len(rb.deliveries) == 5 and len(ra.deliveries) == 5)
    await asyncio.sleep(LINK_TIMEOUT + 0.5)  # the watchdog had its chance to get it wrong
    assert ra.links == [] and rb.links == []
    assert [d[2] for d in rb.deliveries] == [f"before-{n}" for n in range(5)]
    assert a.link_losses == b.link_losses == 0
