"""A node that does not run for a while (SIGSTOP, then SIGCONT: a VM paused, a process swapped
out or starved) hears the cluster again when it runs, whatever the pause, on Redis and on NATS.

Two nodes, the default node_timeout (10 s). Node B is stopped for 1, 3, 5 or 15 s while node A
publishes. When B runs again it must deliver what A published meanwhile and after, drop no node
for its own silence, and the presence rosters must agree again on both nodes and stay so. Past
node_timeout (15 s), A has dropped B as dead (member_removed for B's members) and must take
B's state back (member_added) as soon as it hears from it.

The figures are printed (pytest -s) and quoted in docs/cluster.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster, run_cluster
from tests.support.services import Service
from tests.support.wsclient import PusherWS, pusher

NODE_TIMEOUT = 10  # the default
ROOM = "presence-desk"
CHANNEL = "prices"


class Feed:
    """Every frame a client receives, read in the background."""

    def __init__(self, client: PusherWS) -> None:
        self.client = client
        self.frames: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            self.frames.append(await self.client.recv_event(3600))

    def events(self, prefix: str) -> list[str]:
        """The names of the events on CHANNEL that start with ``prefix``."""
        return [
            f["event"]
            for f in self.frames
            if f.get("channel") == CHANNEL and f["event"].startswith(prefix)
        ]

    def members(self) -> list[tuple[str, str]]:
        """("added" or "removed", user id) for each member event, in order."""
        return [
            (f["event"].rpartition("_")[2], f["data"]["user_id"])
            for f in self.frames
            if f["event"].startswith("pusher_internal:member_")
        ]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def member(cluster: Cluster, index: int, user: str) -> AsyncIterator[Feed]:
    """A client of node ``index`` on CHANNEL and, as ``user``, on ROOM."""
    async with pusher(cluster[index]) as client:
        await client.subscribe_ok(CHANNEL)
        await client.subscribe_presence(ROOM, user)
        feed = Feed(client)
        try:
            yield feed
        finally:
            await feed.stop()


async def wait_for(check: Callable[[], bool], timeout: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{cluster.logs()}")
        await asyncio.sleep(0.05)


async def until(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def publish(cluster: Cluster, index: int, prefix: str, count: int) -> None:
    for n in range(count):
        await until(cluster.trigger, index, CHANNEL, f"{prefix}{n}", {})


async def scenario(cluster: Cluster, pause: float) -> float:
    """Returns the seconds from SIGCONT until B's client had every event A published."""
    async with member(cluster, 0, "alice") as a, member(cluster, 1, "bob") as b:
        for index in (0, 1):
            await until(cluster.wait_users, index, ROOM, ["alice", "bob"])
        await asyncio.sleep(0.2)
        a.frames.clear()  # bob's member_added, counts
        b.frames.clear()
        process = cluster[1].process
        process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            await publish(cluster, 0, "during-", 5)
            await asyncio.sleep(max(0.0, stopped + pause - time.monotonic()))
        finally:
            process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        await publish(cluster, 0, "after-", 10)
        want = [f"during-{n}" for n in range(5)] + [f"after-{n}" for n in range(10)]
        await wait_for(lambda: b.events("during-") + b.events("after-") == want, 10, "B", cluster)
        caught_up = time.monotonic() - resumed

        # Both ways, and the rosters agree, until well past the time B could have dropped A
        # for the silence it did not hear.
        await publish(cluster, 1, "from-b-", 3)
        await wait_for(lambda: len(a.events("from-b-")) == 3, 5, "A hears B", cluster)
        for index in (0, 1):
            await until(cluster.wait_users, index, ROOM, ["alice", "bob"], 10)
        await asyncio.sleep(max(0.0, stopped + NODE_TIMEOUT + 2 - time.monotonic()))
        for index in (0, 1):
            assert await until(cluster.users, index, ROOM) == ["alice", "bob"], cluster.logs()
        await publish(cluster, 0, "later-", 3)
        await wait_for(lambda: len(b.events("later-")) == 3, 5, "B still hears A", cluster)

        assert b.members() == [], cluster.logs()  # B never dropped A
        if pause < NODE_TIMEOUT:
            assert a.members() == [], cluster.logs()
        else:  # A dropped B as dead, and took it back
            assert a.members() == [("removed", "bob"), ("added", "bob")], cluster.logs()
        assert b.events("during-") + b.events("after-") == want  # once each
    return caught_up


@pytest.mark.timeout(90)
@pytest.mark.parametrize("pause", [1, 3, 5, 15])
def test_a_stopped_node_hears_the_cluster_again(
    tmp_path: Path, engine: Service, pause: float
) -> None:
    with run_cluster(tmp_path, engine.url, size=2) as cluster:
        seconds = asyncio.run(scenario(cluster, pause))
        cluster.assert_no_traceback()
        a_log, b_log = cluster[0].log(), cluster[1].log()
    name = engine.url.split(":", 1)[0]
    print(f"\n{name}: node stopped {pause:.0f} s, every event on it {seconds:.2f} s after SIGCONT")
    if pause >= 3:  # 1 s between two ticks a second apart may make a gap of 2 s, or not
        assert "did not run for" in b_log, b_log
    assert "went silent" not in b_log, b_log
    assert ("went silent" in a_log) == (pause >= NODE_TIMEOUT), a_log
