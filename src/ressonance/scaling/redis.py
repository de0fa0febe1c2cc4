"""A :class:`~ressonance.scaling.base.Broker` over Redis pub/sub (redis-py's asyncio client).

Every node publishes to and subscribes to one channel, ``<prefix>:bus``, in the text format of
:mod:`ressonance.scaling.wire`. One task supervises a *session* (a subscribed connection and a
publishing one) run by three tasks: a reader hands frames to the handler, a writer drains the
outbox and pipelines bursts of PUBLISH, and the watchdog (:meth:`WireBroker.watch`) gives the
link up when this node's own frames stop coming back through Redis. When any of them fails, the
broker logs one warning, calls ``handler.link_changed(False)``, and opens a new session with
backoff (0.1 s doubling to 1 s); the outbox keeps filling meanwhile and goes out once the new
session is subscribed, after ``handler.link_changed(True)``. redis-py's own retries are off:
this module decides.

There are no socket timeouts: the watchdog judges the link by what comes back, and a process
that was stopped (SIGSTOP) reads what Redis kept for it instead of giving the link up for the
time it did not run. redis-py writes with ``asyncio.wait_for`` when a socket timeout is set,
and in Python 3.11 that swallows a cancellation arriving as the write completes (CPython
gh-86296): a writer outlived its session, which never ended, so the node stopped hearing the
cluster for good. :func:`_finish` stops a session's tasks even so.

After a reconnect the writer waits ``SETTLE_AFTER`` seconds before it publishes: the other
nodes lost the same server and retry on the same schedule (at least every ``BACKOFF_CAP``),
and what this node queued for them (its re-announcement first of all) would be lost on peers
not yet resubscribed.

:func:`client` makes the plain client another unit talks to Redis through without importing
redis-py (the webhook queue, :mod:`ressonance.webhooks.queue_redis`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ressonance.scaling.base import BrokerHandler
from ressonance.scaling.wire import LinkFailure, WireBroker

log = logging.getLogger("ressonance.scaling")

BACKOFF_START = 0.1
BACKOFF_CAP = 1.0
SETTLE_AFTER = BACKOFF_CAP + 0.5
OPEN_TIMEOUT = 2.0  # connect, subscribe and a PING: a server that accepts and hangs is down
STOP_WAIT = 0.5  # how long a session's task has to end after a cancel, before another one
BATCH = 512  # frames per pipelined burst
CLOSE_WAIT = 2.0
LINK_ERRORS = (RedisError, OSError, LinkFailure)


def client(url: str, connect_timeout: float = OPEN_TIMEOUT) -> Redis:
    """A redis-py asyncio client for ``url`` replying bytes (RESP2), connecting within
    ``connect_timeout`` seconds; a command failing on a dropped connection is tried once more at
    once on a new one (a restarted server), then fails. No socket timeout (module doc): the
    caller bounds each command."""
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 1),
    )


class _Session:
    """One subscribed connection and one publishing connection, opened and closed together."""

    def __init__(self, client: Redis, pubsub: PubSub) -> None:
        self.client = client
        self.pubsub = pubsub
        self.live = True  # the writer stops taking frames once this is false

    @classmethod
    async def open(cls, url: str, channel: str) -> _Session:
        client = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=OPEN_TIMEOUT / 2,
            retry=Retry(NoBackoff(), 0),
        )
        session = cls(client, client.pubsub(ignore_subscribe_messages=True))
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                await session.pubsub.subscribe(channel)
                await client.ping()
        except BaseException:
            await session.close()
            raise
        return session

    async def close(self) -> None:
        self.live = False
        with contextlib.suppress(*LINK_ERRORS):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(*LINK_ERRORS):
            await self.client.aclose()


class RedisBroker(WireBroker):
    """Fan-out between nodes through one Redis pub/sub channel; see the module docstring."""

    def __init__(
        self, url: str, node_id: str, prefix: str = "ressonance", capacity: int = 10_000
    ) -> None:
        super().__init__(url, node_id, capacity)
        self.channel = f"{prefix}:bus"
        self._task: asyncio.Task[None] | None = None

    async def start(self, handler: BrokerHandler) -> None:
        self.handler = handler
        session: _Session | None = None
        try:
            session = await _Session.open(self.url, self.channel)
            self.up = True
        except LINK_ERRORS as exc:
            log.warning("redis %s unreachable (%s); retrying in the background", self.where, exc)
        self._task = asyncio.create_task(self._supervise(session), name=f"redis-{self.node_id}")

    async def close(self) -> None:
        await self.outbox.drained(CLOSE_WAIT, lambda: self.up)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.up = False
        self.handler = None

    async def _supervise(self, session: _Session | None) -> None:
        delay = BACKOFF_START
        settle = 0.0
        while True:
            if session is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                try:
                    session = await _Session.open(self.url, self.channel)
                except LINK_ERRORS as exc:
                    log.debug("redis %s still unreachable: %s", self.where, exc)
                    continue
                log.info("redis %s reachable: cluster link up", self.where)
                self.link_changed(True)
                settle = SETTLE_AFTER
            delay = BACKOFF_START
            try:
                await self._serve(session, settle)
            except Exception as exc:
                log.warning(
                    "redis %s link lost (%s); reconnecting",
                    self.where,
                    exc,
                    exc_info=not isinstance(exc, LINK_ERRORS),
                )
                self.link_changed(False)
            finally:
                self.up = False
                await session.close()
                session = None

    async def _serve(self, session: _Session, settle: float) -> None:
        """Read, write (after ``settle`` seconds) and watch until one of them fails; raise what
        it raised."""
        tasks = [
            asyncio.create_task(self._read(session.pubsub)),
            asyncio.create_task(self._write(session, settle)),
            asyncio.create_task(self.watch()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.cancelled():
                    raise LinkFailure("a task of the session was cancelled")
                task.result()
            raise LinkFailure("a task of the session ended")
        finally:
            session.live = False
            await _finish(tasks)

    async def _read(self, pubsub: PubSub) -> None:
        """Hand frames on, waiting as long as it takes: the watchdog judges the silence."""
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is not None and message["type"] == "message":
                self.received(message["data"])

    async def _write(self, session: _Session, settle: float) -> None:
        """Drain the outbox in pipelined bursts of PUBLISH while the session lives."""
        outbox = self.outbox
        await asyncio.sleep(settle)
        while True:
            await outbox.ready.wait()
            if not session.live:  # it was cancelled, and redis-py swallowed that (module doc)
                return
            batch = outbox.take(BATCH)
            lost = len(batch)
            self.wrote()
            try:
                async with session.client.pipeline(transaction=False) as pipe:
                    for frame in batch:
                        pipe.publish(self.channel, frame)
                    await pipe.execute()
                lost = 0
            finally:
                outbox.done(lost)


async def _finish(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they are over, cancelling again those that swallowed the
    cancellation (module doc)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=STOP_WAIT)
        if pending:
            log.warning("redis: %d task(s) of a lost link still run; cancelling", len(pending))
