"""The dashboard's live figures: a sample of this node's counters every few seconds, the rates
between samples, the last 15 minutes of them, and the cluster as the heartbeats tell it.

:meth:`Overview.sample` runs on a timer (the server's, every :data:`SAMPLE_INTERVAL`);
:meth:`Overview.snapshot` answers ``GET /api/overview`` (with ``public``, where clients
connect, for the app page's connection snippets); :meth:`Overview.heartbeat_stats` is what this
node tells the others with each heartbeat, so that any node's dashboard shows every node
(docs/observability.md).
"""

from __future__ import annotations

import os
import resource
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ressonance import __version__
from ressonance.http.api import Api
from ressonance.node.node import Node
from ressonance.node.stats import LATENCY_BUCKETS, quantile
from ressonance.transport.listener import Listener

SAMPLE_INTERVAL = 2.0  # seconds between samples (the dashboard polls as often)
HISTORY = 450  # samples kept: 15 minutes
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # unix time
    cpu: float  # process CPU seconds
    received: int
    sent: int
    errors: int
    per_app: dict[str, int]  # app id -> messages received + sent
    latency: tuple[list[int], float, int]


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Overview:
    def __init__(
        self,
        node: Node,
        listener: Listener,
        api: Api,
        region: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.listener = listener
        self.api = api
        self.region = region
        self.clock = clock
        self.started = clock()
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._last = self._take()
        self._rates: dict[str, Any] = {"in": 0.0, "out": 0.0, "errors": 0.0, "cpu": 0.0}
        self._app_rates: dict[str, float] = {}

    def _take(self) -> Sample:
        states = self.node.hub.all()
        per_app = {s.app.id: s.received_api + s.received_client + s.sent for s in states}
        # what went wrong for a client: pusher:error frames, refused handshakes, and HTTP API
        # requests answered 4xx/5xx (a bad signature is an error an operator wants to see)
        errors = (
            sum(sum(s.errors.values()) for s in states)
            + sum(self.listener.refusals.values())
            + sum(n for (_, status), n in self.api.requests.items() if status >= 400)
        )
        return Sample(
            t=self.clock(),
            cpu=time.process_time(),
            received=sum(s.received_api + s.received_client for s in states),
            sent=sum(s.sent for s in states),
            errors=errors,
            per_app=per_app,
            latency=self.node.publish_latency.snapshot(),
        )

    def sample(self) -> None:
        """Take a sample; the rates since the last one go into the history."""
        now, last = self._take(), self._last
        self._last = now
        span = max(now.t - last.t, 1e-6)
        p50 = quantile(LATENCY_BUCKETS, last.latency, now.latency, 0.5)
        p99 = quantile(LATENCY_BUCKETS, last.latency, now.latency, 0.99)
        self._rates = {
            "in": (now.received - last.received) / span,
            "out": (now.sent - last.sent) / span,
            "errors": (now.errors - last.errors) / span,
            "cpu": 100.0 * (now.cpu - last.cpu) / span,
            "p50": None if p50 is None else p50 * 1000,
            "p99": None if p99 is None else p99 * 1000,
        }
        self._app_rates = {
            app: (n - last.per_app.get(app, 0)) / span for app, n in now.per_app.items()
        }
        cluster = self._cluster(self._nodes())
        self.history.append(
            {
                "t": round(now.t, 3),
                "connections": cluster["connections"],
                "messages_in_per_s": cluster["messages_in_per_s"],
                "messages_out_per_s": cluster["messages_out_per_s"],
                "errors_per_s": cluster["errors_per_s"],
                "latency_p50_ms": self._rates["p50"],
                "latency_p99_ms": self._rates["p99"],
            }
        )

    def heartbeat_stats(self) -> dict[str, float]:
        """This node's figures for the others' dashboards (short keys: they go every second)."""
        rates = self._rates
        return {
            "mi": round(rates["in"], 2),
            "mo": round(rates["out"], 2),
            "e": round(rates["errors"], 3),
            "cpu": round(rates["cpu"], 1),
            "rss": float(rss_bytes()),
            "up": round(self.clock() - self.started, 1),
            "dr": float(self.node.link.draining),
            "bu": float(self.node.broker.connected),
            "t": round(time.time(), 4),  # the others measure the broker's latency with it
        }

    def _nodes(self) -> list[dict[str, Any]]:
        node = self.node
        mine = self.heartbeat_stats()
        rows = [_row(node.broker.node_id, self.region, node.hub.connection_count(), mine, True)]
        for peer in node.view.peers.values():
            stats = peer.stats
            rows.append(_row(peer.node_id, peer.region, sum(peer.conns.values()), stats, False))
        return rows

    def _cluster(self, nodes: list[dict[str, Any]]) -> dict[str, Any]:
        regions: dict[str, int] = {}
        for row in nodes:
            regions[row["region"]] = regions.get(row["region"], 0) + row["connections"]
        return {
            "connections": sum(r["connections"] for r in nodes),
            "nodes": len(nodes),
            "messages_in_per_s": round(sum(r["messages_in_per_s"] for r in nodes), 2),
            "messages_out_per_s": round(sum(r["messages_out_per_s"] for r in nodes), 2),
            "errors_per_s": round(sum(r["errors_per_s"] for r in nodes), 3),
            "latency_p50_ms": self._rates.get("p50"),
            "latency_p99_ms": self._rates.get("p99"),
            "regions": regions,
        }

    def app_rates(self) -> dict[str, float]:
        """App id -> messages per second (received and sent) here, over the last sample."""
        return {a: round(r, 2) for a, r in self._app_rates.items()}

    def public_address(self) -> dict[str, Any]:
        """Where clients connect: the public listener's address, for the dashboard's connection
        snippets. ``host`` is None when it listens on every interface (the dashboard then uses
        the host it was opened on)."""
        sockets = self.listener.sockets
        if not sockets:
            return {"host": None, "port": None}
        host, port = sockets[0].getsockname()[:2]
        return {"host": None if host in ("0.0.0.0", "::") else host, "port": port}

    def snapshot(self) -> dict[str, Any]:
        nodes = self._nodes()  # reads this process's RSS: once per answer
        return {
            "node": {"id": self.node.broker.node_id, "region": self.region, "version": __version__},
            "public": self.public_address(),
            "cluster": self._cluster(nodes),
            "nodes": nodes,
            "history": list(self.history),
        }


def _row(
    node_id: str, region: str, connections: int, stats: dict[str, float], own: bool
) -> dict[str, Any]:
    return {
        "id": node_id,
        "region": region,
        "connections": connections,
        "messages_in_per_s": float(stats.get("mi", 0.0)),
        "messages_out_per_s": float(stats.get("mo", 0.0)),
        "errors_per_s": float(stats.get("e", 0.0)),
        "cpu_percent": float(stats.get("cpu", 0.0)),
        "rss_bytes": int(stats.get("rss", 0)),
        "broker_up": bool(stats.get("bu", 1.0)),
        "uptime_s": float(stats.get("up", 0.0)),
        "draining": bool(stats.get("dr", 0.0)),
        "self": own,
    }
