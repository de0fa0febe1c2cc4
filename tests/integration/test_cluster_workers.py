"""``serve --workers 2``: two processes on one port (SO_REUSEPORT), each its own node of the cluster
over Redis, so a publish reaches every client whichever worker accepted it; and the refusal of
``--workers`` without a shared broker.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, broker_args
from tests.support.server import free_port, run_server
from tests.support.services import Service, redis_server
from tests.support.wsclient import PusherWS, pusher

pytestmark = pytest.mark.timeout(120)

CLIENTS = 20


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as service:
        yield service


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        return [int(p) for p in f.read().split()]


def established_on(port: int, pid: int) -> int:
    """How many established TCP sockets with local port ``port`` process ``pid`` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match.group(1))
    count = 0
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def test_two_workers_share_the_port_and_every_client_gets_every_publish(
    tmp_path: Path, redis: Service
) -> None:
    args = ["--workers", "2", *broker_args(redis.url, "w")]
    channel = "workers-news"

    async def scenario(cluster: Cluster) -> dict[int, int]:
        async with AsyncExitStack() as stack:
            clients: list[PusherWS] = []
            for _ in range(CLIENTS):
                client = await stack.enter_async_context(pusher(cluster[0]))
                await client.subscribe_ok(channel)
                clients.append(client)
            node = cluster[0]
            held = {pid: established_on(node.port, pid) for pid in children(node.process.pid)}
            # Each HTTP call is a new connection, so it may land on either worker.
            await asyncio.to_thread(cluster.wait_count, 0, channel, CLIENTS, 10)
            for n in range(3):
                await asyncio.to_thread(cluster.trigger, 0, channel, f"e{n}", {"n": n})
            for client in clients:
                # the three calls may go to different workers: each worker's own events keep
                # their order, but one relayed through Redis may come after a later local one
                got = {}
                while len(got) < 3:
                    frame = await client.recv_event()
                    if frame["event"].startswith("pusher"):  # pings, subscription counts
                        continue
                    assert frame["channel"] == channel, frame
                    got[frame["event"]] = frame["data"]
                assert got == {f"e{n}": {"n": n} for n in range(3)}
            return held

    with run_server(tmp_path, args=args) as server:
        cluster = Cluster(redis.url, [server])
        ids = cluster.wait_until(
            lambda: sorted(set(re.findall(r"\(node (w-\d+),", server.log()))),
            lambda found: len(found) == 2,
            10,
            "both workers to log their node ids",
        )
        assert ids == ["w-1", "w-2"]
        held = asyncio.run(scenario(cluster))
        cluster.assert_no_traceback()
    print(f"\n--workers 2: clients per worker process {sorted(held.values())}")
    assert len(held) == 2
    assert sum(held.values()) == CLIENTS, held
    assert all(held.values()), f"every client landed on one worker: {held}"


def test_workers_without_a_shared_broker_are_refused() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESSONANCE_")}
    cmd = [sys.executable, "-m", "ressonance", "serve", "--workers", "2"]
    cmd += ["--host", "127.0.0.1", "--port", str(free_port())]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 2, proc
    assert "workers > 1 needs a shared broker" in proc.stderr
    assert "redis://" in proc.stderr
    assert "nats://" in proc.stderr


def test_workers_do_not_outlive_a_killed_supervisor(tmp_path: Path, redis: Service) -> None:
    """SIGKILL of the parent (an OOM kill, a careless kill -9) must not leave workers serving
    on the shared port beside the next instance: they get SIGTERM and drain."""
    args = ["--workers", "2", *broker_args(redis.url, "w")]
    with run_server(tmp_path, args=args) as server:
        cluster = Cluster(redis.url, [server])
        pids = cluster.wait_until(
            lambda: children(server.process.pid),
            lambda found: len(found) == 2,
            10,
            "two worker processes",
        )
        server.process.kill()
        server.process.wait(timeout=5)

        def alive() -> list[int]:
            """The workers still running (an exited one may stay a zombie until reaped)."""
            running = []
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if state != "Z":
                    running.append(pid)
            return running

        try:
            cluster.wait_until(alive, lambda left: not left, 15, "the workers to exit")
        finally:
            for pid in alive():  # never leave orphans behind a failed test
                os.kill(pid, signal.SIGKILL)
