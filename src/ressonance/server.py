"""Composition root: settings → app store, broker, node, API → listener; signals; drain."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from ressonance.apps.cache import AppCache
from ressonance.apps.crypto import SecretBox, key_from_file
from ressonance.apps.database import AppDatabase
from ressonance.apps.manage import AppManager
from ressonance.apps.records import AppRecord, Source
from ressonance.config import Settings, store_url
from ressonance.dashboard import STATIC_DIR
from ressonance.errors import ConfigError
from ressonance.http.admin import Admin, AdminConfig
from ressonance.http.api import Api
from ressonance.metrics.overview import SAMPLE_INTERVAL, Overview
from ressonance.metrics.prometheus import Exposition, Labels, NodeCollector, SoketiCollector
from ressonance.node.gateway import NodeGateway
from ressonance.node.node import Node
from ressonance.node.replay import ReplayGuard
from ressonance.node.stats import LatencyHistogram
from ressonance.protocol import codes
from ressonance.reclaim import Reclaimer
from ressonance.scaling.factory import make_broker
from ressonance.storage.base import StorageError
from ressonance.storage.factory import open_database, redact
from ressonance.transport.listener import Limits, Listener
from ressonance.webhooks.base import Job, JobQueue
from ressonance.webhooks.letters import DeadLetterBook
from ressonance.webhooks.queue_db import DatabaseQueue
from ressonance.webhooks.service import Webhooks

log = logging.getLogger("ressonance")

TIMEOUTS_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 1.0
HOUSEKEEPING_INTERVAL = 5.0
WEBHOOKS_INTERVAL = 1.0  # seconds between two checks of the webhook leadership
# ressonance_webhook_latency_seconds: from an event to its delivery, retries included (300 s)
WEBHOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
DRAIN_TIMEOUT = 10.0
ANNOUNCE_DELAY = 0.1  # seconds between telling the other nodes of a drain and the 4200s


def limits(settings: Settings) -> Limits:
    """The public listener's limits, from the settings."""
    return Limits(
        activity_timeout=float(settings.activity_timeout),
        pong_timeout=float(settings.pong_timeout),
        handshake_timeout=float(settings.handshake_timeout),
        keep_alive_timeout=float(settings.keep_alive_timeout),
        max_message_bytes=settings.max_message_kb * 1024,
        max_request_bytes=settings.max_request_kb * 1024,
        write_buffer_bytes=settings.write_buffer_kb * 1024,
        close_slow_consumers=settings.slow_consumer == "close",
        max_http_connections=settings.max_http_connections,
    )


def fixed_apps(settings: Settings) -> list[AppRecord]:
    """The apps of the configuration (or the development app), read-only beside the store."""
    source: Source = "development" if settings.dev_app else "config"
    return [AppRecord.fixed(app, source) for app in settings.apps]


def app_database(settings: Settings) -> AppDatabase:
    """The app store the settings name, not opened yet (docs/apps.md)."""
    key = settings.secret_key or key_from_file(Path(settings.data_dir))
    return AppDatabase(open_database(store_url(settings)), SecretBox(key))


def webhook_queue(settings: Settings, database: AppDatabase) -> JobQueue:
    """Where pending webhooks wait (docs/webhooks.md, "Delivery"): Redis Streams on a cluster
    over Redis, else the app store's database (the SQLite file of one node, or PostgreSQL)."""
    if settings.broker.startswith(("redis://", "rediss://")):
        from ressonance.scaling.redis import client
        from ressonance.webhooks.queue_redis import RedisQueue

        return RedisQueue(client(settings.broker), settings.broker_prefix, settings.node_id)
    return DatabaseQueue(database.db, settings.node_id)


async def open_store(database: AppDatabase, settings: Settings) -> None:
    """Connect and migrate; a :class:`ConfigError` naming the store when it cannot."""
    try:
        await database.db.start()
    except StorageError as exc:
        raise ConfigError(f"app store {redact(store_url(settings))}: {exc}") from None


async def prepare(settings: Settings) -> Settings:
    """Open (and migrate) the app store once before serving, so a bad store fails the start
    with a clear message; the development app is dropped when the store has apps."""
    database = app_database(settings)
    await open_store(database, settings)
    try:
        stored = await database.load()
    except StorageError as exc:
        raise ConfigError(f"app store {redact(store_url(settings))}: {exc}") from None
    finally:
        await database.db.close()
    if settings.dev_app and stored[1]:
        return dataclasses.replace(settings, apps=(), dev_app=False)
    return settings


class Server:
    """A running node: build with :meth:`start`, stop with :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = app_database(settings)
        self.apps = AppCache(fixed_apps(settings), self.database)
        self.manager = AppManager(self.database, self.apps, changed=self._app_changed)
        broker = make_broker(settings.broker, settings.node_id, settings.broker_prefix)
        self.node = Node(
            broker,
            activity_timeout=settings.activity_timeout,
            region=settings.region,
            node_timeout=float(settings.node_timeout),
            replay=ReplayGuard(settings.replay_guard_size) if settings.replay_guard else None,
        )
        self.api = Api(self.node, self.apps, unready=self.unready, degraded=self.degraded)
        self.apps.on_change = self.node.app_changed
        self.node.on_apps_changed = lambda app_id: self.apps.refresh_soon()
        self.webhook_latency = LatencyHistogram(WEBHOOK_BUCKETS)
        self.webhooks = Webhooks(
            webhook_queue(settings, self.database),
            self.apps,
            self._is_tenant,
            settings.webhooks_allow_private_targets,
            lambda: self.node.view.leader() == self.node.view.node_id,
            self.webhook_latency.observe,
            self._webhook_attempt,
        )
        self.node.set_webhook_sink(self.webhooks.recorder)
        if settings.broker == "memory":  # one node: no cluster to learn before sending
            self.node.webhooks.quiet_until = 0.0
        self.listener: Listener | None = None
        self.admin: Listener | None = None  # the admin listener, when admin_port is set
        self._timers: list[asyncio.Task[None]] = []
        self.reclaimer = Reclaimer()

    async def start(self) -> None:
        await open_store(self.database, self.settings)
        try:
            await self.apps.start()
        except StorageError as exc:
            await self.database.db.close()
            raise ConfigError(f"app store {redact(store_url(self.settings))}: {exc}") from None
        apps = await self.apps.all()
        for app in apps:  # the configured apps; the store's come by on_change
            self.node.webhooks.set_app(app.id, app)
        if self._queue_per_node() and any(app.webhooks for app in apps):
            log.warning(
                "webhooks on a NATS cluster with a SQLite app store: each node's pending "
                "webhooks are in its own file and only the leader posts; use a Redis broker "
                "or a PostgreSQL app store (docs/webhooks.md)"
            )
        await self.webhooks.start()
        await self.node.start()
        self.listener = Listener(
            limits(self.settings), self.api.handle, NodeGateway(self.node, self.apps)
        )
        await self.listener.listen(
            self.settings.host, self.settings.port, reuse_port=self.settings.workers > 1
        )
        self.listener.flushed = self.node.written  # publish latency, once per loop tick
        self.overview = Overview(self.node, self.listener, self.api, self.settings.region)
        self.node.link.stats_source = self.overview.heartbeat_stats  # for others' dashboards
        if self.settings.admin_port:
            await self._start_admin(self.listener, self.overview)
        self._timers = [
            asyncio.create_task(self._every(TIMEOUTS_INTERVAL, self._check_timeouts)),
            asyncio.create_task(self._every(HEARTBEAT_INTERVAL, self.node.heartbeat)),
            asyncio.create_task(self._every(HOUSEKEEPING_INTERVAL, self.node.housekeeping)),
            asyncio.create_task(self._every(SAMPLE_INTERVAL, self.overview.sample)),
            asyncio.create_task(self.apps.run()),
            asyncio.create_task(self._every(WEBHOOKS_INTERVAL, self.webhooks.tick)),
        ]

    def _queue_per_node(self) -> bool:
        """Whether each node of this cluster keeps its pending webhooks in its own SQLite file
        (a NATS cluster without PostgreSQL): the leader posts only its own."""
        broker = self.settings.broker
        return self.database.db.dialect == "sqlite" and broker.startswith(("nats", "tls"))

    def _is_tenant(self, app_id: str) -> bool:
        """Whether an app's webhooks were set by a tenant (the app store) rather than the
        operator (the configuration): a tenant's may not reach private addresses."""
        record = self.apps.record(app_id)
        return record is not None and not record.read_only

    def _webhook_attempt(self, job: Job, outcome: str, reason: str) -> None:
        self.node.webhook_attempt(job.app_id, job.url, job.events, outcome, reason, job.attempts)

    async def _app_changed(self, app_id: str) -> None:
        """An app was changed through this node: serve the change here at once, and tell the
        other nodes to read the store now."""
        await self.apps.refresh(force=True)
        self.node.announce_app(app_id)

    async def _start_admin(self, public: Listener, overview: Overview) -> None:
        """The admin listener: the dashboard, its API and /metrics (docs/observability.md)."""
        settings = self.settings
        collector = NodeCollector(
            self.node,
            public,
            self.api,
            Labels.parse(settings.metrics_app_labels),
            settings.region,
            self.node.view.broker_latency,
            self.apps,
            self.webhooks,
            self.webhook_latency,
        )
        collectors: list[NodeCollector | SoketiCollector] = [collector]
        if settings.metrics_compat == "soketi":
            collectors.append(SoketiCollector(self.node, public, self.api, settings.port))
        exposition = Exposition(*collectors)
        admin = Admin(
            AdminConfig(settings.admin_token, STATIC_DIR, settings.admin_metrics_auth),
            self.node,
            self.apps,
            exposition.render,
            overview.snapshot,
            overview.app_rates,
            self.unready,
            self.manager,
            self.degraded,
            dead_letters=DeadLetterBook(self.webhooks.queue),
        )
        self.admin = Listener(limits(settings), admin.handle)
        await self.admin.listen(settings.admin_host, settings.admin_port)

    def degraded(self) -> list[str]:
        """What works less well but is no reason to stop sending connections here (``/ready``
        answers 200 and says it): the app store down, when every node would be down alike."""
        return [self.apps.problem] if self.apps.problem else []

    def unready(self) -> list[str]:
        """Why this node should get no new connections (``GET /ready`` on both listeners)."""
        reasons = self.node.unready()
        if self.listener is not None:
            reasons.extend(self.listener.unready())
        return reasons

    def _check_timeouts(self) -> None:
        assert self.listener is not None
        self.listener.check_timeouts()
        if self.admin is not None:
            self.admin.check_timeouts()
        self.reclaimer.observe(len(self.listener.connections))

    @staticmethod
    async def _every(interval: float, action: Callable[[], object]) -> None:
        """``action`` every ``interval`` seconds (awaited when it is a coroutine function);
        a failure is logged and the next one runs."""
        while True:
            await asyncio.sleep(interval)
            try:
                result = action()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("periodic task failed")

    async def stop(self, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        """Drain, then leave the cluster. The timers run on through the drain (time-outs of
        closing sockets, heartbeats)."""
        listener = self.listener
        if listener is not None:
            listener.stop_accepting()
            # The other nodes first hear that this node's connections are leaving, so that the
            # clients reconnecting to them are not counted twice against max_connections.
            self.node.announce_drain()
            if self.node.has_peers:
                await asyncio.sleep(ANNOUNCE_DELAY)
            listener.close_all(codes.RECONNECT_NOW, "Server is restarting")
            await listener.wait_closed(drain_timeout)
            listener.abort_all()
        if self.admin is not None:  # up through the drain: /ready says "draining" meanwhile
            self.admin.stop_accepting()
            self.admin.close_all(codes.RECONNECT_NOW, "Server is restarting")
            self.admin.abort_all()
        for timer in self._timers:
            timer.cancel()
        await self.webhooks.close()
        await self.node.stop()
        await self.database.db.close()


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain (4200) and return."""
    server = Server(settings)
    await server.start()
    assert server.listener is not None
    addresses = ", ".join("{}:{}".format(*s.getsockname()[:2]) for s in server.listener.sockets)
    if server.admin is not None:
        log.info(
            "admin listener (dashboard, /metrics) on %s",
            ", ".join("{}:{}".format(*s.getsockname()[:2]) for s in server.admin.sockets),
        )
    log.info(
        "ressonance listening on %s (node %s, broker %s)",
        addresses,
        settings.node_id,
        settings.broker.split("@")[-1],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: closing connections with 4200")
    await server.stop()
