"""Two ressonance nodes on a private redis-server: the target of the cluster scenarios.

Everything runs on CPU 0, like the single node: redis-server (its own free loopback port, no
persistence, never the shared 6379) and nodes "a" and "b" started with `--broker redis://...`.
The load generator puts its publisher on node A and alternates subscribers between A and B
(`loadgen ws --port2`), so every publish is delivered by A to half the subscribers and relayed
over Redis to B for the other half.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import subscription_count
from bench.servers import Server, free_port, spawn, start_ressonance

KNOWN_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
MESH_TIMEOUT_S = 20.0  # nodes hear each other within a heartbeat (1 s); this is the bound


def redis_binary() -> str:
    """Debian's redis-server (scripts/install-test-deps.sh installs it)."""
    found = shutil.which("redis-server") or shutil.which(
        "redis-server", path=os.pathsep.join(KNOWN_DIRS)
    )
    if not found:
        raise RuntimeError("redis-server is not installed (run scripts/install-test-deps.sh)")
    return found


def redis_version() -> str:
    """`7.0.15` from `redis-server --version`, or "" when it is missing."""
    try:
        out = subprocess.run(
            [redis_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return ""
    return next((w[2:] for w in out.split() if w.startswith("v=")), out.strip())


@dataclass
class Cluster:
    """Nodes A and B and their redis-server, measured as one server."""

    nodes: list[Server]
    redis: Server
    name: str = "ressonance"

    @property
    def port(self) -> int:
        """Node A: the publisher's node, and half the subscribers."""
        return self.nodes[0].port

    @property
    def port2(self) -> int:
        """Node B: the other half of the subscribers."""
        return self.nodes[1].port

    def cpu_seconds(self) -> float:
        return sum(node.cpu_seconds() for node in self.nodes)

    def cpu_times(self) -> dict[str, float]:
        """`server_cpu` is both nodes together; each node and Redis on their own as well."""
        a, b = (node.cpu_seconds() for node in self.nodes)
        return {"server_cpu": a + b, "node_a_cpu": a, "node_b_cpu": b,
                "redis_cpu": self.redis.cpu_seconds()}  # fmt: skip

    def rss_kib(self) -> int:
        return sum(node.rss_kib() for node in self.nodes)

    def alive(self) -> bool:
        return all(p.alive() for p in [*self.nodes, self.redis])

    def stop(self) -> None:
        for p in [*self.nodes, self.redis]:
            p.stop()

    def wait_counted(self, channel: str, count: int, deadline: float) -> float:
        """Until both nodes count `count` subscriptions to `channel` cluster-wide: each has heard
        the other's sockets over Redis, so both directions of the relay work. Returns seconds."""
        t0 = time.monotonic()
        end = min(deadline, t0 + MESH_TIMEOUT_S)
        seen: list[int | str] = []
        while True:
            seen = []
            for node in self.nodes:
                try:
                    seen.append(subscription_count(node.port, channel, timeout=2.0))
                except (OSError, RuntimeError, ValueError) as e:
                    seen.append(f"{type(e).__name__}: {e}")
            if all(n == count for n in seen):
                return time.monotonic() - t0
            if time.monotonic() >= end or not self.alive():
                logs = "\n".join(self._log_tail(p) for p in [*self.nodes, self.redis])
                raise RuntimeError(
                    f"the nodes did not both count {count} subscriptions to {channel} "
                    f"(A, B saw {seen}) within {end - t0:.0f} s\n{logs}"
                )
            time.sleep(0.1)

    @staticmethod
    def _log_tail(p: Server) -> str:
        return f"--- {p.name} log:\n{p.log.read_text(errors='replace')[-1500:]}"


def start_cluster(logdir: Path, src: Path | None = None) -> Cluster:
    """redis-server, then nodes A and B on it; whatever started is stopped if a step fails."""
    started: list[Server] = []
    try:
        port = free_port()
        argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(logdir)]  # fmt: skip
        redis = spawn("redis", port, argv, {}, logdir, logdir)
        started.append(redis)
        url = f"redis://127.0.0.1:{port}/0"
        for node_id in ("a", "b"):
            flags = ("--broker", url, "--node-id", node_id)
            started.append(start_ressonance(logdir, src, flags, f"ressonance-{node_id}"))
    except BaseException:
        for p in reversed(started):
            with contextlib.suppress(OSError):
                p.stop()
        raise
    return Cluster(nodes=started[1:], redis=redis)
