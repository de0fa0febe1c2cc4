"""Composition root: settings → app store, broker, node, API → listener; signals; drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from ressonance.apps.static import StaticAppStore
from ressonance.config import Settings
from ressonance.http.api import Api
from ressonance.node.node import Node
from ressonance.node.replay import ReplayGuard
from ressonance.reclaim import Reclaimer
from ressonance.scaling.factory import make_broker
from ressonance.transport.listener import Listener

log = logging.getLogger("ressonance")

SWEEP_INTERVAL = 1.0
CLUSTER_INTERVAL = 1.0
HOUSEKEEPING_INTERVAL = 5.0
DRAIN_TIMEOUT = 10.0


class Server:
    """A running node: build with :meth:`start`, stop with :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.apps = StaticAppStore(settings.apps)
        broker = make_broker(settings.broker, settings.node_id, settings.broker_prefix)
        self.node = Node(
            broker,
            activity_timeout=settings.activity_timeout,
            region=settings.region,
            node_timeout=float(settings.node_timeout),
            replay=ReplayGuard(settings.replay_guard_size) if settings.replay_guard else None,
        )
        self.api = Api(self.node, self.apps)
        self.listener: Listener | None = None
        self._timers: list[asyncio.Task[None]] = []
        self.reclaimer = Reclaimer()

    async def start(self) -> None:
        await self.node.start()
        self.listener = Listener(self.settings, self.node, self.api, self.apps)
        await self.listener.listen(
            self.settings.host, self.settings.port, reuse_port=self.settings.workers > 1
        )
        self._timers = [
            asyncio.create_task(self._every(SWEEP_INTERVAL, self._sweep)),
            asyncio.create_task(self._every(CLUSTER_INTERVAL, self.node.tick)),
            asyncio.create_task(self._every(HOUSEKEEPING_INTERVAL, self.node.sweep)),
        ]

    def _sweep(self) -> None:
        assert self.listener is not None
        self.listener.sweep()
        self.reclaimer.observe(len(self.listener.connections))

    @staticmethod
    async def _every(interval: float, action: object) -> None:
        assert callable(action)
        while True:
            await asyncio.sleep(interval)
            try:
                action()
            except Exception:
                log.exception("periodic task failed")

    async def stop(self, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        # the timers run on through the drain: time-outs of closing sockets, heartbeats
        if self.listener is not None:
            await self.listener.drain(drain_timeout)
        for timer in self._timers:
            timer.cancel()
        await self.node.stop()


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain (4200) and return."""
    server = Server(settings)
    await server.start()
    assert server.listener is not None
    addresses = ", ".join("{}:{}".format(*s.getsockname()[:2]) for s in server.listener.sockets)
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
