"""The ``/metrics`` page: a Prometheus collector that reads the node's plain counters when it is
scraped (the only module importing ``prometheus_client``).

Nothing here runs on the hot path: the node, the listener and the API count in plain ints
(once per publish, per loop tick or per request) and :class:`NodeCollector` turns them into
metric families at scrape time. Per-app labels are opt-in (``metrics_app_labels``) so that the
number of series stays bounded however many apps a cluster carries; apps not selected are
summed under ``app_id="_other"``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from ressonance import __version__
from ressonance.http.api import Api
from ressonance.node.hub import AppState
from ressonance.node.node import Node
from ressonance.node.stats import LatencyHistogram
from ressonance.transport.listener import Listener

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER_APPS = "_other"

# Every family this module exposes (without the _total/_bucket/... suffixes Prometheus adds),
# for the docs and the dashboards' tests: one place.
FAMILIES = (
    "ressonance_connections",
    "ressonance_connections_opened",
    "ressonance_connections_closed",
    "ressonance_channels",
    "ressonance_subscriptions",
    "ressonance_messages_received",
    "ressonance_messages_sent",
    "ressonance_bytes_received",
    "ressonance_bytes_sent",
    "ressonance_http_requests",
    "ressonance_errors",
    "ressonance_slow_consumers",
    "ressonance_publish_latency_seconds",
    "ressonance_broker_latency_seconds",
    "ressonance_broker_up",
    "ressonance_broker_reconnects",
    "ressonance_broker_dropped",
    "ressonance_cluster_nodes",
    "ressonance_cluster_connections",
    "ressonance_cluster_node_connections",
    "ressonance_app_store_up",
    "ressonance_app_store_errors",
    "ressonance_app_store_reloads",
    "ressonance_apps",
    "ressonance_webhooks",
    "ressonance_webhook_latency_seconds",
    "ressonance_webhook_queue_depth",
    "ressonance_webhook_jobs_dropped",
    "ressonance_build_info",
)


@dataclass(frozen=True, slots=True)
class Labels:
    """Which apps get their own ``app_id`` label: none (node totals), every one, or a list."""

    apps: frozenset[str] = frozenset()
    every: bool = False

    @classmethod
    def parse(cls, setting: str) -> Labels:
        if setting == "*":
            return cls(every=True)
        return cls(apps=frozenset(a for a in setting.split(",") if a))

    @property
    def on(self) -> bool:
        return self.every or bool(self.apps)

    def of(self, app_id: str) -> str:
        return app_id if self.every or app_id in self.apps else OTHER_APPS


class AppStoreStatus(Protocol):
    """What the metrics read of the app cache (:class:`ressonance.apps.cache.AppCache`)."""

    @property
    def healthy(self) -> bool: ...

    failures: int
    reloads: int

    def sources(self) -> dict[str, int]: ...


class WebhookStatus(Protocol):
    """What the metrics read of the webhooks (:class:`ressonance.webhooks.service.Webhooks`
    and its dispatcher's counters)."""

    depth: int
    leading: bool

    @property
    def dropped(self) -> int: ...

    def outcomes(self) -> dict[tuple[str, str, str], int]: ...


class NodeCollector(Collector):
    """The node's families, read from the node, its public listener and its API."""

    def __init__(
        self,
        node: Node,
        listener: Listener,
        api: Api,
        labels: Labels,
        region: str = "",
        broker_latency: LatencyHistogram | None = None,
        app_store: AppStoreStatus | None = None,
        webhooks: WebhookStatus | None = None,
        webhook_latency: LatencyHistogram | None = None,
    ) -> None:
        self.app_store = app_store
        self.webhooks = webhooks
        self.webhook_latency = webhook_latency
        self.node = node
        self.listener = listener
        self.api = api
        self.labels = labels
        self.region = region
        self.broker_latency = broker_latency

    def collect(self) -> Iterator[Metric]:
        yield from self._per_app(self.node.hub.all())
        yield from self._transport()
        yield from self._http()
        yield _histogram(
            "ressonance_publish_latency_seconds",
            "From a publish accepted on this node (HTTP API or client event) to its frame "
            "written to this node's subscribers",
            self.node.publish_latency,
        )
        if self.broker_latency is not None:
            yield _histogram(
                "ressonance_broker_latency_seconds",
                "From a control message sent by another node to its arrival here",
                self.broker_latency,
            )
        yield from self._cluster()
        if self.app_store is not None:
            yield from self._app_store(self.app_store)
        if self.webhooks is not None:
            yield from self._webhooks(self.webhooks)

    def _webhooks(self, webhooks: WebhookStatus) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "ressonance_webhooks",
            "Webhook events by outcome on this node (it posts while it is the leader): "
            "delivered, retried (an attempt failed, another follows) or dead (given up)",
            labels=["app_id", "event", "outcome"],
        )
        summed: dict[tuple[str, str, str], int] = defaultdict(int)
        for (app_id, event, outcome), n in webhooks.outcomes().items():
            summed[(self.labels.of(app_id), event, outcome)] += n
        for labels, n in sorted(summed.items()):
            total.add_metric(list(labels), n)
        yield total
        if self.webhook_latency is not None:
            yield _histogram(
                "ressonance_webhook_latency_seconds",
                "From a webhook event to its delivery (retries included)",
                self.webhook_latency,
            )
        yield CounterMetricFamily(
            "ressonance_webhook_jobs_dropped",
            "Webhook events recorded on this node and dropped before the queue kept them: "
            "more than 100,000 waited while the queue could not keep up or be reached",
            value=webhooks.dropped,
        )
        yield GaugeMetricFamily(
            "ressonance_webhook_queue_depth",
            "Webhook events waiting or being posted in the cluster's queue (-1: it cannot be read)",
            value=webhooks.depth,
        )

    @staticmethod
    def _app_store(store: AppStoreStatus) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ressonance_app_store_up",
            "1 while the app store (SQLite or PostgreSQL) can be read; 0 while this node "
            "serves the apps it last read",
            value=int(store.healthy),
        )
        yield CounterMetricFamily(
            "ressonance_app_store_errors",
            "Reads of the app store that failed",
            value=store.failures,
        )
        yield CounterMetricFamily(
            "ressonance_app_store_reloads",
            "Times every app was read again because the store's revision moved",
            value=store.reloads,
        )
        apps = GaugeMetricFamily(
            "ressonance_apps",
            "Apps this node serves, by where they come from (store, config, development)",
            labels=["source"],
        )
        for source, count in sorted(store.sources().items()):
            apps.add_metric([source], count)
        yield apps

    # per app (or node totals) ---------------------------------------------------------------
    def _per_app(self, states: list[AppState]) -> Iterator[Metric]:
        labels = self.labels
        names = ["app_id"] if labels.on else []

        def key(state: AppState) -> tuple[str, ...]:
            return (labels.of(state.app.id),) if labels.on else ()

        # node totals always show, at 0 before anything happened
        seed: list[tuple[str, ...]] = [] if labels.on else [()]

        def gauge(name: str, doc: str, value: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
            family = GaugeMetricFamily(name, doc, labels=names)
            for k, v in _sum(value, seed).items():
                family.add_metric(list(k), v)
            return family

        def counter(
            name: str,
            doc: str,
            value: Iterable[tuple[tuple[str, ...], float]],
            extra: list[str],
            zero: list[tuple[str, ...]] | None = None,
        ) -> Metric:
            family = CounterMetricFamily(name, doc, labels=names + extra)
            for k, v in _sum(value, seed if zero is None else zero).items():
                family.add_metric(list(k), v)
            return family

        yield gauge(
            "ressonance_connections",
            "WebSocket connections open on this node",
            ((key(s), len(s.sockets)) for s in states),
        )
        yield counter(
            "ressonance_connections_opened",
            "WebSocket connections opened on this node",
            ((key(s), s.opened) for s in states),
            [],
        )
        closes = self.listener.closes
        yield counter(
            "ressonance_connections_closed",
            "WebSocket connections closed, by close code (1006: ended without a close frame)",
            (
                ((*((labels.of(app),) if labels.on else ()), str(code)), n)
                for (app, code), n in closes.items()
            ),
            ["code"],
            [],
        )
        yield gauge(
            "ressonance_channels",
            "Channels with at least one subscriber on this node",
            ((key(s), len(s.channels)) for s in states),
        )
        yield gauge(
            "ressonance_subscriptions",
            "Channel subscriptions on this node (a socket in 3 channels counts 3)",
            ((key(s), s.subscriptions) for s in states),
        )
        yield counter(
            "ressonance_messages_received",
            "Events accepted on this node: published through the HTTP API (one per channel), "
            "or client events",
            (
                pair
                for s in states
                for pair in (
                    ((*key(s), "api"), s.received_api),
                    ((*key(s), "client"), s.received_client),
                )
            ),
            ["source"],
            [] if labels.on else [("api",), ("client",)],
        )
        yield counter(
            "ressonance_messages_sent",
            "Frames delivered to subscribers on this node: a fan-out to N sockets counts N",
            ((key(s), s.sent) for s in states),
            [],
        )
        errors = [((*key(s), str(code)), n) for s in states for code, n in s.errors.items()]
        refusals = self.listener.refusals
        errors.extend(
            ((*((OTHER_APPS,) if labels.on else ()), str(code)), n) for code, n in refusals.items()
        )
        yield counter(
            "ressonance_errors",
            "pusher:error frames sent, by code, and refused WebSocket handshakes, by HTTP "
            "status or Pusher code",
            errors,
            ["code"],
            [],
        )
        sent = CounterMetricFamily(
            "ressonance_bytes_sent", "Bytes written to clients", labels=["transport"]
        )
        sent.add_metric(["ws"], sum(s.bytes_sent for s in states))
        sent.add_metric(["http"], self.listener.http_bytes_out)
        yield sent

    def _transport(self) -> Iterator[Metric]:
        listener = self.listener
        received = CounterMetricFamily(
            "ressonance_bytes_received", "Bytes read from clients", labels=["transport"]
        )
        received.add_metric(["ws"], sum(t[0] for t in listener.ws_in().values()))
        received.add_metric(["http"], listener.http_bytes_in)
        yield received
        slow = CounterMetricFamily(
            "ressonance_slow_consumers",
            "Slow consumers (write buffer over write_buffer_kb): closed with 4100, or frames "
            "dropped",
            labels=["action"],
        )
        slow.add_metric(["close"], listener.slow_closes)
        slow.add_metric(["drop"], listener.frames_dropped)
        yield slow

    def _http(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "ressonance_http_requests",
            "HTTP requests answered on the public port, by route and status",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), n in sorted(self.api.requests.items()):
            requests.add_metric([endpoint, str(status)], n)
        yield requests

    def _cluster(self) -> Iterator[Metric]:
        node = self.node
        broker = node.broker
        yield GaugeMetricFamily(
            "ressonance_broker_up", "1 while the link to the broker is up", value=broker.connected
        )
        yield CounterMetricFamily(
            "ressonance_broker_reconnects",
            "Times the broker link came back after a loss",
            value=broker.reconnects,
        )
        yield CounterMetricFamily(
            "ressonance_broker_dropped",
            "Frames to the other nodes given up (queue full while the link was down)",
            value=broker.dropped,
        )
        view = node.view
        yield GaugeMetricFamily(
            "ressonance_cluster_nodes",
            "Nodes in the cluster as this node sees it, itself included",
            value=1 + len(view.peers),
        )
        regions: dict[str, int] = defaultdict(int)
        regions[self.region] += node.hub.connection_count()
        for peer in view.peers.values():
            regions[peer.region] += sum(peer.conns.values())
        per_node = GaugeMetricFamily(
            "ressonance_cluster_node_connections",
            "WebSocket connections of each node of the cluster, as its heartbeats tell "
            "(with --workers, every worker on the one admin port)",
            labels=["node_id", "region"],
        )
        per_node.add_metric([broker.node_id, self.region], node.hub.connection_count())
        for peer in view.peers.values():
            per_node.add_metric([peer.node_id, peer.region], sum(peer.conns.values()))
        yield per_node
        by_region = GaugeMetricFamily(
            "ressonance_cluster_connections",
            "WebSocket connections in the whole cluster, by the region of their node",
            labels=["region"],
        )
        for region, n in sorted(regions.items()):
            by_region.add_metric([region], n)
        yield by_region
        info = GaugeMetricFamily(
            "ressonance_build_info",
            "1, labelled with this node's version, id and region",
            labels=["version", "node_id", "region"],
        )
        info.add_metric([__version__, broker.node_id, self.region], 1)
        yield info


def _sum(
    pairs: Iterable[tuple[tuple[str, ...], float]], seed: list[tuple[str, ...]]
) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float, dict.fromkeys(seed, 0.0))
    for k, v in pairs:
        out[k] += v
    return out


def _histogram(name: str, doc: str, histogram: LatencyHistogram) -> Metric:
    family = HistogramMetricFamily(name, doc)
    buckets = [
        ("+Inf" if bound == float("inf") else repr(bound), n) for bound, n in histogram.cumulative()
    ]
    family.add_metric([], buckets, histogram.sum)
    return family


class Exposition:
    """The registry of one node: its collectors and the process collector (RSS, CPU, fds)."""

    def __init__(self, *collectors: Collector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        self.started = time.time()

    def render(self) -> bytes:
        return generate_latest(self.registry)


# metrics_compat = "soketi" ---------------------------------------------------------------------
SOKETI_FAMILIES = (
    "soketi_connected",
    "soketi_new_connections",
    "soketi_new_disconnections",
    "soketi_socket_received_bytes",
    "soketi_socket_transmitted_bytes",
    "soketi_ws_messages_received",
    "soketi_ws_messages_sent",
    "soketi_http_received_bytes",
    "soketi_http_transmitted_bytes",
    "soketi_http_calls_received",
    "soketi_process_cpu_seconds",
    "soketi_process_resident_memory_bytes",
    "soketi_process_virtual_memory_bytes",
    "soketi_process_open_fds",
    "soketi_process_max_fds",
    "soketi_process_start_time_seconds",
)


class SoketiCollector(Collector):
    """Soketi's family names and labels (``app_id``, ``port``), so that a Soketi Grafana
    dashboard keeps working after the move. Always per app, as Soketi's are. Its byte counters
    have no ``_total`` suffix in Soketi: they are exposed untyped under the exact name."""

    def __init__(self, node: Node, listener: Listener, api: Api, port: int) -> None:
        self.node = node
        self.listener = listener
        self.api = api
        self.port = str(port)
        self._process = ProcessCollector(registry=None)

    def collect(self) -> Iterator[Metric]:
        port = self.port
        states = {s.app.id: s for s in self.node.hub.all()}
        ws_in = self.listener.ws_in()
        closed: dict[str, int] = defaultdict(int)
        for (app_id, _code), n in self.listener.closes.items():
            closed[app_id] += n
        http = self.api.by_app
        apps = sorted(set(states) | set(ws_in) | set(closed) | set(http))

        def family(
            kind: type[GaugeMetricFamily | CounterMetricFamily | UnknownMetricFamily],
            name: str,
            doc: str,
            value: Callable[[str], float],
        ) -> Metric:
            out = kind(name, doc, labels=["app_id", "port"])
            for app_id in apps:
                out.add_metric([app_id, port], value(app_id))
            return out

        def state(app_id: str) -> AppState | None:
            return states.get(app_id)

        yield family(
            GaugeMetricFamily,
            "soketi_connected",
            "Open WebSocket connections",
            lambda a: len(s.sockets) if (s := state(a)) else 0,
        )
        yield family(
            CounterMetricFamily,
            "soketi_new_connections",
            "WebSocket connections opened",
            lambda a: s.opened if (s := state(a)) else 0,
        )
        yield family(
            CounterMetricFamily,
            "soketi_new_disconnections",
            "WebSocket connections closed",
            lambda a: closed.get(a, 0),
        )
        yield family(
            UnknownMetricFamily,
            "soketi_socket_received_bytes",
            "Bytes received on WebSockets",
            lambda a: ws_in.get(a, [0, 0])[0],
        )
        yield family(
            UnknownMetricFamily,
            "soketi_socket_transmitted_bytes",
            "Bytes delivered on WebSockets (a fan-out to N counts N)",
            lambda a: s.bytes_sent if (s := state(a)) else 0,
        )
        yield family(
            CounterMetricFamily,
            "soketi_ws_messages_received",
            "WebSocket messages received",
            lambda a: ws_in.get(a, [0, 0])[1],
        )
        yield family(
            CounterMetricFamily,
            "soketi_ws_messages_sent",
            "WebSocket messages delivered (a fan-out to N counts N)",
            lambda a: s.sent if (s := state(a)) else 0,
        )
        yield family(
            UnknownMetricFamily,
            "soketi_http_received_bytes",
            "Bytes of HTTP API request bodies (successful calls)",
            lambda a: http.get(a, [0, 0, 0])[1],
        )
        yield family(
            UnknownMetricFamily,
            "soketi_http_transmitted_bytes",
            "Bytes of HTTP API response bodies (successful calls)",
            lambda a: http.get(a, [0, 0, 0])[2],
        )
        yield family(
            CounterMetricFamily,
            "soketi_http_calls_received",
            "Successful HTTP API calls",
            lambda a: http.get(a, [0, 0, 0])[0],
        )
        for metric in self._process.collect():  # soketi_process_*, with the port label
            renamed = Metric("soketi_" + metric.name, metric.documentation, metric.type)
            for sample in metric.samples:
                renamed.add_sample(
                    "soketi_" + sample.name, {**sample.labels, "port": port}, sample.value
                )
            yield renamed
