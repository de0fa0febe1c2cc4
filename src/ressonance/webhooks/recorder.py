"""Recorder: the node's webhook sink. It records each webhook event as one entry and hands the
queue a :class:`~ressonance.webhooks.base.Chunk` of them every
:data:`~ressonance.webhooks.base.CHUNK_EVERY` seconds (docs/webhooks.md, "Delivery").

A client event is the hot path: the node extends :attr:`Recorder.entries` with three objects it
already has (the app id, the sender's socket id, the frame its subscribers got), and does
nothing else (a flat list: no object per event that outlives it, so no work for the garbage
collector); what the webhook needs from the frame is read when the leader expands the
chunk (:func:`ressonance.webhooks.jobs.expand`). The other events (channels occupied and
vacated, members, counts, cache misses) are rare and recorded as their JSON (:meth:`event`).

Every :data:`~ressonance.webhooks.base.CHUNK_EVERY` seconds (a timer that :meth:`start` arms)
the entries are cut into chunks of at most :data:`~ressonance.webhooks.base.CHUNK_MAX`
entries, which are pushed one after another, in order, by one task. When a push fails
(the queue's storage is unavailable), the chunk stays first in line and the push is tried again
every :data:`RETRY_EVERY` second. At most ``buffer`` entries (:data:`BUFFER`) wait so; the
events beyond that are dropped, logged and counted in :attr:`Recorder.dropped` (with the
events of the last :data:`~ressonance.webhooks.base.CHUNK_EVERY` seconds before a node is
killed, the only way a webhook is lost before it is kept durably).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ressonance.models import App, WebhookEvent
from ressonance.webhooks.base import CHUNK_EVERY, CHUNK_MAX, EVENT, Chunk
from ressonance.webhooks.jobs import event_json

BUFFER = 100_000  # entries held in memory while the queue cannot be reached
RETRY_EVERY = 1.0  # seconds between two pushes while the queue cannot be reached

Pusher = Callable[[Chunk], Awaitable[None]]

log = logging.getLogger(__name__)


class Recorder:
    """:meth:`start` it on the loop; append to :attr:`entries` or call :meth:`event`;
    :meth:`close` cuts the last chunk and waits for the pushes."""

    def __init__(
        self,
        push: Pusher,
        *,
        clock: Callable[[], float] = time.time,
        every: float = CHUNK_EVERY,
        buffer: int = BUFFER,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        self._push = push
        self._clock = clock  # Unix time: a chunk's created_at
        self._every = every
        self._buffer = buffer
        self._retry_every = retry_every
        # app id, tag, text, app id, tag, text ... of the events since the last cut, extended
        # by the node (the list object stays the same for the recorder's life)
        self.entries: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._chunks: deque[Chunk] = deque()  # cut, not kept by the queue yet
        self._held = 0  # entries in self._chunks
        self._task: asyncio.Task[None] | None = None
        # chunk ids: a random per-process prefix and a counter (unique across nodes and
        # restarts without a system call per chunk)
        self._prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self.recorded = 0  # events recorded (in a chunk cut)
        self.pushed = 0  # events the queue kept
        self.dropped = 0  # events dropped: the buffer was full
        self.push_failures = 0

    @property
    def waiting(self) -> int:
        """Events recorded and not kept by the queue yet."""
        return self._held + len(self.entries) // 3

    def start(self) -> None:
        """Cut the entries every ``every`` seconds from now on (on the running loop)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._every, self._tick)

    def event(self, app: App, event: WebhookEvent) -> None:
        """A webhook event of ``app`` other than a client event."""
        self.entries.extend((app.id, EVENT, event_json(event)))

    async def close(self) -> None:
        """Stop the timer, cut the last entries and wait until the queue has kept every chunk
        (bound it with a time-out: while the queue cannot be reached this waits)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.cut()
        while self._task is not None:
            await asyncio.shield(self._task)

    def _tick(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._every, self._tick)
        self.cut()

    def cut(self) -> None:
        """The entries so far into chunks, to be pushed."""
        if not self.entries:
            return
        entries = self.entries[:]
        self.entries.clear()
        step = 3 * CHUNK_MAX
        for start in range(0, len(entries), step):
            self._chunk(entries[start : start + step])
        if self._chunks and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush())

    def _chunk(self, entries: list[str]) -> None:
        """A chunk of the flat ``entries`` (three items each)."""
        size = len(entries) // 3
        room = max(self._buffer - self._held, 0)
        if room < size:
            self._drop(size - room)
            size = room
            entries = entries[: 3 * size]
            if not size:
                return
        chunk_id = f"{self._prefix}{next(self._ids) % 16**8:08x}"
        created_at = self._clock()
        self._chunks.append(
            Chunk(
                chunk_id,
                created_at,
                "\n".join(entries[0::3]),
                "\n".join(entries[1::3]),
                "\n".join(entries[2::3]),
                size,
            )
        )
        self._held += size
        self.recorded += size

    def _drop(self, count: int) -> None:
        if self.dropped // 10_000 != (self.dropped + count) // 10_000 or not self.dropped:
            log.warning(
                "webhook events dropped: %d held while the queue cannot keep up or be "
                "reached (%d dropped so far)",
                self._held,
                self.dropped + count,
            )
        self.dropped += count

    async def _flush(self) -> None:
        """Push the chunks, in order, until none waits; on a failure keep it and retry."""
        failing = False
        try:
            while self._chunks:
                chunk = self._chunks[0]
                try:
                    await self._push(chunk)
                except Exception as error:  # any failure: keep the chunk, try again
                    self.push_failures += 1
                    if not failing:
                        log.warning(
                            "webhooks: events cannot be queued (%s); %d wait in memory, "
                            "retrying every %g s",
                            type(error).__name__,
                            self.waiting,
                            self._retry_every,
                        )
                    failing = True
                    await asyncio.sleep(self._retry_every)
                    continue
                self._chunks.popleft()
                self._held -= chunk.size
                self.pushed += chunk.size
                if failing:
                    log.warning("webhooks: events are queued again")
                    failing = False
        finally:
            self._task = None
