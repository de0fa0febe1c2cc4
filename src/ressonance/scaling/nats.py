"""A :class:`~ressonance.scaling.base.Broker` over NATS core pub/sub (nats-py).

Every node publishes to and subscribes to one subject, ``<prefix>.bus``, in the text format of
:mod:`ressonance.scaling.wire`. nats-py reconnects on its own (forever, every
``RECONNECT_WAIT`` seconds) and resubscribes; its disconnected and reconnected callbacks become
``handler.link_changed``. The outbox is ours, not nats-py's pending buffer: a writer task
publishes only while the link is up, so what is sent while NATS is away waits in the bounded
outbox (oldest dropped and counted) and goes out after the reconnect.

After a reconnect the writer waits ``SETTLE_AFTER`` seconds before it publishes: the other
nodes lost the same server and come back on the same schedule, and what this node queued for
them (its re-announcement first of all) would be lost on peers not yet resubscribed.

nats-py notices a dead connection by its own pings; the watchdog of
:class:`~ressonance.scaling.wire.WireBroker` also checks that this node's frames come back
(NATS echoes them), and forces a reconnect when they stop while the connection looks alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import SlowConsumerError, StaleConnectionError

from ressonance.scaling.base import BrokerHandler
from ressonance.scaling.wire import FRAGMENT_CHARS, LinkFailure, WireBroker

log = logging.getLogger("ressonance.scaling")

RECONNECT_WAIT = 0.25
SETTLE_AFTER = 3 * RECONNECT_WAIT  # after a reconnect, the peers' reconnects too (module doc)
FIRST_CONNECT_WAIT = 1.0  # start() waits this long for the first connect before going on
BATCH = 512
CLOSE_WAIT = 2.0


class NatsBroker(WireBroker):
    """Fan-out between nodes through one NATS subject; see the module docstring."""

    def __init__(
        self, url: str, node_id: str, prefix: str = "ressonance", capacity: int = 10_000
    ) -> None:
        super().__init__(url, node_id, capacity)
        self.subject = f"{prefix}.bus"
        self._nc = Client()
        self._writable = asyncio.Event()  # set while the link is up (and has settled)
        self._settle: asyncio.TimerHandle | None = None
        self._tried = asyncio.Event()  # the first connection attempt is over, either way
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, handler: BrokerHandler) -> None:
        self.handler = handler
        connect = asyncio.create_task(self._connect(), name=f"nats-connect-{self.node_id}")
        self._tasks = [
            connect,
            asyncio.create_task(self._write(), name=f"nats-{self.node_id}"),
            asyncio.create_task(self._watch(), name=f"nats-watch-{self.node_id}"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), FIRST_CONNECT_WAIT)
        if connect.done() and connect.exception() is None:
            self.up = True
            self._writable.set()
        else:
            log.warning("nats %s unreachable; retrying in the background", self.where)
        self._tried.set()  # from now on, a late first connect is announced

    async def close(self) -> None:
        await self.outbox.drained(CLOSE_WAIT, lambda: self.up)
        if self.up:
            with contextlib.suppress(NatsError, OSError):
                await self._flushed()
        self.handler = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._cancel_settle()
        self.up = False  # so that the disconnect close() causes is no "link lost"
        with contextlib.suppress(NatsError, OSError):
            await self._nc.close()

    async def _connect(self) -> None:
        """Connect (nats-py retries forever), subscribe, and announce the link if ``start``
        has already returned."""
        await self._nc.connect(
            servers=[self.url],
            name=self.node_id,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]  # a float works
            connect_timeout=1,
            ping_interval=1,
            max_outstanding_pings=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        # a piece of a fragmented frame must fit the server's max_payload (1 MiB by default),
        # at 4 bytes a character at worst, with room for the fragment header
        self.fragment_chars = max(1024, min(FRAGMENT_CHARS, (self._nc.max_payload - 1024) // 4))
        await self._nc.subscribe(self.subject, cb=self._on_message)
        await self._flushed()
        if self._tried.is_set():
            self._link_up()
        self._tried.set()

    async def _flushed(self) -> None:
        """Return once the server has processed every command sent so far. One ``flush`` is
        not enough: nats-py writes its PING straight to the socket, ahead of commands still
        in its pending buffer (a SUB that a peer's publish would then overtake). The first
        round trip lets the flusher write that buffer, the second one follows it."""
        await self._nc.flush(timeout=1)
        await self._nc.flush(timeout=1)

    async def _on_message(self, msg: Msg) -> None:
        self.received(msg.data.decode("utf-8", "replace"))

    async def _on_error(self, exc: Exception) -> None:
        self._tried.set()
        if isinstance(exc, SlowConsumerError):  # NATS dropped messages meant for this node
            log.warning("nats %s: this node reads too slowly, messages lost: %s", self.where, exc)
        else:
            log.debug("nats %s: %s", self.where, exc)

    async def _on_disconnected(self) -> None:
        if self.up:
            log.warning("nats %s link lost; reconnecting", self.where)
        self._link_down()

    def _link_down(self) -> None:
        self._cancel_settle()
        self._writable.clear()
        self.link_changed(False)

    async def _watch(self) -> None:
        """Run the watchdog while the link is up; when it fails, force a reconnect."""
        while True:
            await self._writable.wait()
            try:
                await self.watch()
            except LinkFailure as exc:
                if not self.up:  # nats-py saw it first
                    continue
                log.warning("nats %s link lost (%s); reconnecting", self.where, exc)
                self._link_down()
                await self._reconnect()

    async def _reconnect(self) -> None:
        """Drop the connection and open another, as nats-py does when its pings go unanswered:
        through the public ``force_reconnect`` where this nats-py has it (recent releases),
        else the way nats-py itself does it for a stale connection."""
        force = getattr(self._nc, "force_reconnect", None)
        if force is not None:
            await force()
        else:
            await self._nc._process_op_err(StaleConnectionError())

    async def _on_reconnected(self) -> None:
        log.info("nats %s reachable: cluster link up", self.where)
        self._link_up()

    def _link_up(self) -> None:
        """Up again: tell the handler now, publish the backlog once the peers are back too."""
        self.link_changed(True)
        self._cancel_settle()
        self._settle = asyncio.get_running_loop().call_later(SETTLE_AFTER, self._writable.set)

    def _cancel_settle(self) -> None:
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None

    async def _write(self) -> None:
        outbox = self.outbox
        while True:
            await outbox.ready.wait()
            await self._writable.wait()
            batch = outbox.take(BATCH)
            self.wrote()
            lost: list[Exception] = []
            try:
                for frame in batch:
                    try:
                        await self._nc.publish(self.subject, frame.encode())
                    except Exception as exc:  # NatsError, or anything else: keep writing
                        lost.append(exc)
            finally:
                outbox.done(len(lost))
            if lost:
                log.debug("nats %s: the last frame lost: %s", self.where, lost[-1])
