"""The scenarios: each starts from a fresh server and returns its figures (a flat dict).

Every figure comes with `client_cpu` (the load generator's user+sys CPU over wall time, on its own
core) and `server_cpu` (the same for the server), so a client-bound figure shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.cluster import Cluster
from bench.loadgen import Session, signed_publish
from bench.servers import Server

Metrics = dict[str, Any]
Target = Server | Cluster  # one node, or two nodes on Redis (the cluster-* scenarios)


@dataclass(frozen=True)
class Scale:
    """Sizes and durations: the full run, or `--quick` for the smoke test."""

    quick: bool
    warmup_ms: int
    dur_ms: int
    settle_s: float  # wait after the last subscription before RSS is read
    leave_s: float  # wait after every client left before RSS is read

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full


FULL = Scale(quick=False, warmup_ms=1000, dur_ms=5000, settle_s=3.0, leave_s=5.0)
QUICK = Scale(quick=True, warmup_ms=200, dur_ms=500, settle_s=0.3, leave_s=0.5)

# closed loop: at most this many publishes per channel in flight (not yet received by all)
WINDOW_PUBLISHES = 32
# open loop: offered deliveries per second for the latency figures
LATENCY_RATE = 50_000
SAMPLE_EVERY = 7  # read the timestamp of every 7th delivery


def phase(server: Target, session: Session, command: str) -> Metrics:
    """Send one phase command; return its result with the server's CPU over the measured span
    (`server_cpu`; a cluster adds `node_a_cpu`, `node_b_cpu` and `redis_cpu`)."""
    session.send(command)
    session.read("mark")
    cpu0, t0 = server.cpu_times(), time.monotonic()
    session.read("end")
    cpu1, t1 = server.cpu_times(), time.monotonic()
    result = session.read("result")
    for figure, seconds in cpu1.items():
        result[figure] = round((seconds - cpu0[figure]) / (t1 - t0), 3)
    return result


def pick(d: dict[str, Any], *keys: str, keep_zero: bool = True) -> Metrics:
    return {k: d[k] for k in keys if k in d and (keep_zero or d[k])}


def connect(server: Target, deadline: float, **opts: str | int) -> tuple[Session, Metrics]:
    """Open and subscribe the sockets; the ready line tells connections/s and any failure."""
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    session = Session("ws", server.port, deadline, **opts)
    try:
        ready = session.read("ready")
    except BaseException:
        session.close()
        raise
    ready["server_cpu"] = round((server.cpu_seconds() - cpu0) / (time.monotonic() - t0), 3)
    if ready["ready"] != ready["wanted"]:
        session.close()
        raise RuntimeError(
            f"only {ready['ready']} of {ready['wanted']} sockets subscribed: {ready['first_error']}"
        )
    return session, ready


def idle(full: int, quick: int) -> Callable[[Server, Scale, float], Metrics]:
    def run(server: Server, scale: Scale, deadline: float) -> Metrics:
        n = scale.n(full, quick)
        before = server.rss_kib()
        session, ready = connect(server, deadline, subs=n, channels=1, prefix="idle")
        with session:
            time.sleep(scale.settle_s)
            after = server.rss_kib()
        return {
            "kib_per_conn": round((after - before) / n, 2),
            "conns_per_s": ready["conns_per_s"],
            "client_cpu": ready["client_cpu"],
            "server_cpu": ready["server_cpu"],
            "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
        }

    return run


def fanout(full: int, quick: int, paced: bool) -> Callable[[Target, Scale, float], Metrics]:
    """One private channel, N subscribers, one publisher socket sending client events.

    On a cluster the publisher is on node A and the subscribers alternate between A and B; the
    measurement starts once both nodes count every subscription (they hear each other).
    """

    def run(server: Target, scale: Scale, deadline: float) -> Metrics:
        n = scale.n(full, quick)
        opts: dict[str, str | int]
        opts = dict(subs=n, channels=1, prefix="private-fan", pub_sockets=1, publish_from="pubs")
        if isinstance(server, Cluster):
            opts["port2"] = server.port2
        session, _ready = connect(server, deadline, fanout=n, **opts)
        with session:
            mesh: Metrics = {}
            if isinstance(server, Cluster):  # n subscribers + the publisher, on both nodes
                mesh["mesh_s"] = round(server.wait_counted("private-fan0", n + 1, deadline), 2)
            timing = f"{scale.warmup_ms} {scale.dur_ms} {SAMPLE_EVERY}"
            keys: tuple[str, ...]
            if paced:
                rate = scale.n(LATENCY_RATE, 5_000)
                r = phase(server, session, f"open {rate} {timing}")
                keys = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "deliveries_per_s")
            else:
                r = phase(server, session, f"closed {WINDOW_PUBLISHES * n} {timing}")
                keys = ("deliveries_per_s", "p50_ms", "p99_ms")
        parts = ("node_a_cpu", "node_b_cpu", "redis_cpu")  # a cluster's only
        extra = pick(r, "lost", "first_error", keep_zero=False)
        return pick(r, *keys, "client_cpu", "server_cpu", *parts) | extra | mesh

    return run


def random_channels(server: Server, scale: Scale, deadline: float) -> Metrics:
    """5k sockets on 5k private channels; one publisher sends to a random channel each time."""
    n = scale.n(5000, 50)
    opts = dict(subs=n, channels=n, prefix="private-r", pub_sockets=1, publish_from="pubs")
    session, _ready = connect(server, deadline, fanout=1, **opts)
    with session:
        r = phase(server, session, f"closed 2000 {scale.warmup_ms} {scale.dur_ms} {SAMPLE_EVERY}")
    return pick(r, "deliveries_per_s", "p50_ms", "p99_ms", "client_cpu", "server_cpu")


def client_events(server: Server, scale: Scale, deadline: float) -> Metrics:
    """100 private channels with two sockets each; every socket sends client events to its peer."""
    pairs = scale.n(100, 5)
    opts = dict(subs=2 * pairs, channels=pairs, prefix="private-pair", publish_from="subs")
    session, _ready = connect(server, deadline, fanout=1, **opts)
    with session:
        window = 2 * pairs * WINDOW_PUBLISHES
        r = phase(server, session, f"closed {window} {scale.warmup_ms} {scale.dur_ms} 7")
    return pick(r, "deliveries_per_s", "p50_ms", "p99_ms", "client_cpu", "server_cpu")


def presence_churn(server: Server, scale: Scale, deadline: float) -> Metrics:
    """200 sockets in 10 presence channels; each unsubscribes and subscribes again, closed loop."""
    n = scale.n(200, 20)
    session, _ready = connect(server, deadline, subs=n, channels=10, prefix="presence-room")
    with session:
        r = phase(server, session, f"churn {scale.warmup_ms} {scale.dur_ms}")
    return {
        "joins_leaves_per_s": round(2 * r["joins_per_s"], 1),
        "client_cpu": r["client_cpu"],
        "server_cpu": r["server_cpu"],
    }


MEMORY_CYCLES = 3


def memory_after_leave(server: Server, scale: Scale, deadline: float) -> Metrics:
    """10k sockets on 100 channels, 2 s of publishing, every client leaves; three times over.

    ``rss_growth_pct`` is RSS after the last cycle against the start. A leak grows with every
    cycle; memory the allocators keep for reuse does not: ``cycle_growth_pct`` compares the
    last cycle's RSS after leaving with the first's."""
    start = server.rss_kib()
    n = scale.n(10_000, 100)
    opts = dict(subs=n, channels=100, prefix="private-mem", pub_sockets=1, publish_from="pubs")
    afters: list[int] = []
    peak = 0
    for _cycle in range(MEMORY_CYCLES):
        session, _ready = connect(server, deadline, fanout=n // 100, **opts)
        with session:
            window = WINDOW_PUBLISHES * n // 100
            phase(server, session, f"closed {window} 0 {min(scale.dur_ms, 2000)} 0")
            peak = max(peak, server.rss_kib())
            session.send("close")
            session.read("closed")
            time.sleep(scale.leave_s)
            afters.append(server.rss_kib())
    after = afters[-1]
    return {
        "rss_growth_pct": round(100 * (after - start) / start, 1),
        "cycle_growth_pct": round(100 * (after - afters[0]) / afters[0], 1),
        "rss_start_mib": round(start / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_after_mib": [round(a / 1024, 1) for a in afters],
    }


def http_publish(server: Server, scale: Scale, deadline: float, workdir: Path) -> Metrics:
    """Signed POST /apps/{id}/events, 50 connections, one request in flight each, no subscribers.

    Keep-alive where the server allows it: Soketi answers with `Connection: close`, so against it
    every request pays a new TCP connection (counted in `reconnects`).
    """
    request = signed_publish(server.port, "http-bench", "x" * 64)
    req = workdir / f"request-{server.port}.http"
    req.write_bytes(request)
    timing = dict(warmup_ms=scale.warmup_ms, dur_ms=scale.dur_ms)
    with Session("http", server.port, deadline, req=str(req), conns=50, **timing) as session:
        session.read("mark")
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        session.read("end")
        cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        r = session.read("result")
    r["server_cpu"] = round(cpu, 3)
    keys = ("requests_per_s", "client_cpu", "server_cpu", "reconnects", "non_200")
    return pick(r, *keys) | pick(r, "first_error", keep_zero=False)


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[..., Metrics]  # (server: Target, scale, deadline, workdir) -> figures
    main: str  # the headline figure
    higher_is_better: bool
    about: str
    cluster: bool = False  # runs on two nodes and a redis-server (ressonance only)


def _no_dir(f: Callable[[Any, Scale, float], Metrics]) -> Callable[..., Metrics]:
    return lambda server, scale, deadline, _workdir: f(server, scale, deadline)


SCENARIOS: list[Scenario] = [
    Scenario("idle-1k", _no_dir(idle(1000, 50)), "kib_per_conn", False, "1k idle subscribed"),
    Scenario("idle-10k", _no_dir(idle(10_000, 100)), "kib_per_conn", False, "10k idle"),
    Scenario("idle-19.5k", _no_dir(idle(19_500, 200)), "kib_per_conn", False, "19.5k idle"),
    Scenario(
        "fanout-1k", _no_dir(fanout(1000, 20, False)), "deliveries_per_s", True, "1k subs, closed"
    ),
    Scenario(
        "fanout-10k", _no_dir(fanout(10_000, 50, False)), "deliveries_per_s", True, "10k, closed"
    ),
    Scenario("latency-1k", _no_dir(fanout(1000, 20, True)), "p99_ms", False, "1k subs, 50k/s"),
    Scenario("latency-10k", _no_dir(fanout(10_000, 50, True)), "p99_ms", False, "10k, 50k/s"),
    Scenario(
        "random-5k", _no_dir(random_channels), "deliveries_per_s", True, "5k sockets, 5k channels"
    ),
    Scenario("http-publish", http_publish, "requests_per_s", True, "signed POST /events, c=50"),
    Scenario(
        "client-events", _no_dir(client_events), "deliveries_per_s", True, "100 private pairs"
    ),
    Scenario(
        "presence-churn", _no_dir(presence_churn), "joins_leaves_per_s", True, "200 in 10 rooms"
    ),
    Scenario(
        "memory-after-leave", _no_dir(memory_after_leave), "rss_growth_pct", False, "10k then 0, x3"
    ),
]


def on_cluster(single: Scenario) -> Scenario:
    """The same scenario on two nodes over Redis (bench/cluster.py)."""
    about = f"{single.name} on 2 nodes via Redis"
    return replace(single, name=f"cluster-{single.name}", about=about, cluster=True)


SCENARIOS += [on_cluster(sc) for sc in SCENARIOS if sc.name in ("fanout-1k", "latency-1k")]
