"""Recorder: the node's webhook sink. It records each webhook event as one entry and hands the
queue a :class:`~ressonance.webhooks.base.Chunk` of them every
:data:`~ressonance.webhooks.base.CHUNK_EVERY` seconds (docs/webhooks.md, "Delivery").

A client event is the hot path: the node extends the app's list (:meth:`Recorder.log`, which
the node's state of the app holds) with two objects it already has, the sender's socket id and
the frame its subscribers got, and does nothing else (a flat list: no object per event that
outlives it, so no work for the garbage collector); what the webhook needs from the frame is
read when the leader expands the chunk (:func:`ressonance.webhooks.jobs.expand`). The other
events (channels occupied and vacated, members, counts, cache misses) are rare and recorded as
their JSON (:meth:`Recorder.event`), after the client events recorded before them.

Every :data:`~ressonance.webhooks.base.CHUNK_EVERY` seconds (a timer that :meth:`start` arms)
the entries are cut into chunks of at most :data:`~ressonance.webhooks.base.CHUNK_MAX`
entries, which are pushed in order by one task, the chunks waiting together (one transaction).
When a push fails (the queue's storage is unavailable), the chunks stay first in line and the
push is tried again
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

Pusher = Callable[[list[Chunk]], Awaitable[None]]
PUSH_MAX = 16  # chunks in one push (one transaction)
FOLDS = 10  # folds of the logs per chunk time

log = logging.getLogger(__name__)


class Recorder:
    """:meth:`start` it on the loop; extend the lists of :meth:`log` with a socket id and a
    frame per client event, or call :meth:`event` / :meth:`record`; :meth:`close` cuts the
    last chunk and waits for the pushes."""

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
        # app id → socket id, frame, socket id, frame ... of its client events since the last
        # fold, extended by the node (each list stays the same for the recorder's life)
        self._logs: dict[str, list[str]] = {}
        # the chunk being gathered: pieces of "\n"-joined app ids, tags and texts, in order
        self._apps: list[str] = []
        self._tags: list[str] = []
        self._texts: list[str] = []
        self._folded = 0  # entries in the pieces
        self._timer: asyncio.TimerHandle | None = None
        self._ticks = 0
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
        logged = sum(len(log) for log in self._logs.values()) // 2
        return self._held + self._folded + logged

    def log(self, app_id: str) -> list[str]:
        """The list the node extends with ``(socket id, frame)`` for each client event of
        ``app_id`` it records (the same list for the recorder's life)."""
        return self._logs.setdefault(app_id, [])

    def record(self, app_id: str, tag: str, text: str) -> None:
        """One entry, after every client event recorded before it."""
        self.fold()
        self._piece(app_id, tag, text, 1)

    def start(self) -> None:
        """Cut the entries every ``every`` seconds from now on (on the running loop)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._every / FOLDS, self._tick)

    def event(self, app: App, event: WebhookEvent) -> None:
        """A webhook event of ``app`` other than a client event."""
        self.record(app.id, EVENT, event_json(event))

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
        """Every tenth of ``every``: the logs folded while their frames are still in the CPU's
        caches (a fold of 0.1 s of a busy node's frames read and freed them from memory: 1.3 %
        of the node's time); every ``every``: the chunk cut."""
        self._timer = asyncio.get_running_loop().call_later(self._every / FOLDS, self._tick)
        self.fold()
        self._ticks += 1
        if self._ticks % FOLDS == 0:
            self._seal()

    def cut(self) -> None:
        """Every entry so far into chunks, to be pushed."""
        self.fold()
        self._seal()

    def fold(self) -> None:
        """The client events logged so far into the chunk being gathered."""
        for app_id, log in self._logs.items():
            if not log:
                continue
            start, count = 0, len(log) // 2
            while start < count:  # pieces that fill the chunk being gathered, no more
                size = min(count - start, CHUNK_MAX - self._folded)
                part = log[2 * start : 2 * (start + size)]
                apps = (app_id + "\n") * size
                self._piece(apps[:-1], "\n".join(part[0::2]), "\n".join(part[1::2]), size)
                start += size
            log.clear()

    def _piece(self, apps: str, tags: str, texts: str, size: int) -> None:
        self._apps.append(apps)
        self._tags.append(tags)
        self._texts.append(texts)
        self._folded += size
        if self._folded >= CHUNK_MAX:
            self._seal()

    def _seal(self) -> None:
        """The pieces gathered into a chunk, pushed in the background."""
        size, self._folded = self._folded, 0
        if not size:
            return
        apps, tags, texts = ("\n".join(p) for p in (self._apps, self._tags, self._texts))
        self._apps.clear()
        self._tags.clear()
        self._texts.clear()
        room = max(self._buffer - self._held, 0)
        if room < size:
            self._drop(size - room)
            if not room:
                return
            size = room
            apps, tags, texts = ("\n".join(t.split("\n")[:room]) for t in (apps, tags, texts))
        chunk_id = f"{self._prefix}{next(self._ids) % 16**8:08x}"
        created_at = self._clock()
        self._chunks.append(Chunk(chunk_id, created_at, apps, tags, texts, size))
        self._held += size
        self.recorded += size
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush())

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
        """Push the chunks, in order, until none waits; on a failure keep them and retry."""
        failing = False
        try:
            while self._chunks:
                batch = list(itertools.islice(self._chunks, PUSH_MAX))
                try:
                    await self._push(batch)
                except Exception as error:  # any failure: keep the chunks, try again
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
                for chunk in batch:
                    self._chunks.popleft()
                    self._held -= chunk.size
                    self.pushed += chunk.size
                if failing:
                    log.warning("webhooks: events are queued again")
                    failing = False
        finally:
            self._task = None
