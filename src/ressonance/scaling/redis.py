"""A :class:`~ressonance.scaling.base.Broker` over Redis pub/sub (redis-py's asyncio client).

Every node publishes to and subscribes to one channel, ``<prefix>:bus``, in the text format of
:mod:`ressonance.scaling.wire`. One task supervises a *session* (a subscribed connection and a
publishing one): a reader hands frames to the handler, a writer drains the outbox and pipelines
bursts of PUBLISH. When the session fails, the broker logs one warning, calls
``handler.link_changed(False)``, and opens a new session with backoff (0.1 s doubling to 1 s);
the outbox keeps filling meanwhile and goes out once the new session is subscribed, after
``handler.link_changed(True)``. redis-py's own retries are off: this module decides.

After a reconnect the writer waits ``SETTLE_AFTER`` seconds before it publishes: the other
nodes lost the same server and retry on the same schedule (at least every ``BACKOFF_CAP``),
and what this node queued for them (its re-announcement first of all) would be lost on peers
not yet resubscribed.
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
from ressonance.scaling.wire import WireBroker

log = logging.getLogger("ressonance.scaling")

BACKOFF_START = 0.1
BACKOFF_CAP = 1.0
SETTLE_AFTER = BACKOFF_CAP + 0.5
PING_EVERY = 0.5  # the reader pings Redis this often on the subscribed connection ...
SILENT_LIMIT = 2.0  # ... and gives the link up after this long without a byte from it
BATCH = 512  # frames per pipelined burst
CLOSE_WAIT = 2.0
LINK_ERRORS = (RedisError, OSError)


class _Session:
    """One subscribed connection and one publishing connection, opened and closed together."""

    def __init__(self, client: Redis, pubsub: PubSub) -> None:
        self.client = client
        self.pubsub = pubsub

    @classmethod
    async def open(cls, url: str, channel: str) -> _Session:
        client = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=1.0,
            socket_timeout=SILENT_LIMIT,
            retry=Retry(NoBackoff(), 0),
        )
        session = cls(client, client.pubsub(ignore_subscribe_messages=True))
        try:
            await session.pubsub.subscribe(channel)
            await client.ping()
        except BaseException:
            await session.close()
            raise
        return session

    async def close(self) -> None:
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
        """Read and write (after ``settle`` seconds) until one of them fails; raise what it
        raised."""
        tasks = [
            asyncio.create_task(self._read(session.pubsub)),
            asyncio.create_task(self._write(session.client, settle)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, pubsub: PubSub) -> None:
        """Hand frames on; ping when quiet, and give the link up after ``SILENT_LIMIT``."""
        loop = asyncio.get_running_loop()
        heard = next_ping = loop.time()
        while True:
            now = loop.time()
            if now - heard > SILENT_LIMIT:
                raise TimeoutError(f"no reply from redis for {SILENT_LIMIT} s")
            if now >= next_ping:
                await pubsub.ping()
                next_ping = now + PING_EVERY
            message = await pubsub.get_message(timeout=PING_EVERY)
            if message is None:
                continue
            if message["type"] == "message":
                self.received(message["data"])
            heard = loop.time()  # after handling: only the wait on Redis counts as its silence

    async def _write(self, client: Redis, settle: float) -> None:
        """Drain the outbox in pipelined bursts of PUBLISH."""
        outbox = self.outbox
        await asyncio.sleep(settle)
        while True:
            await outbox.ready.wait()
            batch = outbox.take(BATCH)
            lost = len(batch)
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for frame in batch:
                        pipe.publish(self.channel, frame)
                    await pipe.execute()
                lost = 0
            finally:
                outbox.done(lost)
