"""JobMaker: the node's webhook sink, which turns each :class:`WebhookEvent` into the
:class:`~ressonance.webhooks.base.Job` of every webhook of the app that wants it.

The sink is called on the event loop's hot path, so a call costs O(the app's webhooks): no
I/O, no await, no task. It builds the body once per event (every matching webhook posts the
same bytes) and hands the jobs to a pusher (the durable queue's ``push``) in the background:
one flush task at a time, however many events come.

With ``app.webhook_batching`` the events of one (app, webhook) within :data:`BATCH_WINDOW`
of the first one go into one job, in order, at most :data:`BATCH_MAX` events; one timer closes
the batches whose window has passed. A batch is ordered per receiver (``app|url``), since its
events span channels; an unbatched job per channel and receiver (``app|url|channel``).

When the push fails (the queue's storage is unavailable), the jobs stay in memory, in order,
and the push is tried again every :data:`RETRY_EVERY` second. At most ``buffer`` jobs
(:data:`BUFFER`) wait so; the jobs made beyond that are dropped and counted in
:attr:`JobMaker.dropped` (the one way a webhook is lost before it is kept durably).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ressonance.models import App, Webhook, WebhookEvent
from ressonance.webhooks.base import Job

BATCH_WINDOW = 0.25  # seconds a batch stays open after its first event
BATCH_MAX = 100  # events in one batch
BUFFER = 100_000  # jobs held in memory while the queue cannot be reached
RETRY_EVERY = 1.0  # seconds between two pushes while the queue cannot be reached
PUSH_CHUNK = 1000  # jobs in one push

Pusher = Callable[[list[Job]], Awaitable[None]]

log = logging.getLogger(__name__)
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps(separators=) is not
_quote = json.encoder.encode_basestring_ascii  # a JSON string, ASCII-escaped (C)


@dataclass(slots=True)
class _Batch:
    app: App
    webhook: Webhook
    closes_at: float  # monotonic
    events: list[dict[str, object]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def event_json(event: WebhookEvent) -> str:
    """``event.to_json()`` as JSON text, the same bytes the encoder would write, built from the
    C string escaper (a job is made per event: this is its largest cost)."""
    parts = ['{"name":', _quote(event.name), ',"channel":', _quote(event.channel)]
    if event.user_id is not None:
        parts += [',"user_id":', _quote(event.user_id)]
    if event.event is not None:
        parts += [',"event":', _quote(event.event)]
    if event.data is not None:
        parts += [',"data":', _quote(event.data)]
    if event.socket_id is not None:
        parts += [',"socket_id":', _quote(event.socket_id)]
    if event.subscription_count is not None:
        parts += [',"subscription_count":', str(int(event.subscription_count))]
    parts.append("}")
    return "".join(parts)


def single_body(time_ms: int, event: WebhookEvent) -> bytes:
    """The body of a POST with one event (no batching)."""
    return f'{{"time_ms":{time_ms},"events":[{event_json(event)}]}}'.encode()


def body(time_ms: int, events: list[dict[str, object]]) -> bytes:
    """A webhook POST's body, compact, exactly as posted."""
    return _ENCODER.encode({"time_ms": time_ms, "events": events}).encode()


class JobMaker:
    """Call it with ``(app, event)``; :meth:`close` ends open batches and waits for the push."""

    def __init__(
        self,
        push: Pusher,
        is_tenant: Callable[[str], bool],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        buffer: int = BUFFER,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        self._push = push
        self._is_tenant = is_tenant  # called per job: must be a cheap look-up
        self._clock = clock  # Unix time: time_ms and created_at
        self._monotonic = monotonic  # batch windows
        self._buffer = buffer
        self._retry_every = retry_every
        self._pending: deque[Job] = deque()
        self._pushing = 0  # jobs in the push being awaited
        self._task: asyncio.Task[None] | None = None
        self._batches: dict[tuple[str, Webhook], _Batch] = {}  # oldest first
        self._timer: asyncio.TimerHandle | None = None
        self.made = 0  # jobs made
        self.pushed = 0  # jobs the queue kept
        self.dropped = 0  # jobs dropped: the buffer was full
        # job ids: "msg_" + 32 hex digits, a random per-process prefix and a counter (unique
        # across nodes and restarts without a system call per job, as uuid4 would make)
        self._prefix = "msg_" + secrets.token_hex(10)
        self._ids = itertools.count(1)
        self.push_failures = 0

    @property
    def waiting(self) -> int:
        """Jobs made and not kept by the queue yet (in open batches: not counted)."""
        return len(self._pending) + self._pushing

    def __call__(self, app: App, event: WebhookEvent) -> None:
        encoded = b""
        now = 0.0
        for webhook in app.webhooks:
            if not webhook.wants(event.name, event.channel):
                continue
            if app.webhook_batching:
                self._batch(app, webhook, event.name, event.to_json())
                continue
            if not encoded:  # once per event: every webhook posts the same bytes
                now = self._clock()
                encoded = single_body(int(now * 1000), event)
            order_key = f"{app.id}|{webhook.url}|{event.channel}"
            self._add(self._job(app, webhook, order_key, encoded, (event.name,), now))

    async def close(self) -> None:
        """Close every open batch and wait until the queue has kept every job (bound it with a
        time-out: while the queue cannot be reached this waits)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for key in list(self._batches):
            self._end(self._batches.pop(key))
        while self._task is not None:
            await asyncio.shield(self._task)

    def _job(
        self,
        app: App,
        webhook: Webhook,
        order_key: str,
        encoded: bytes,
        names: tuple[str, ...],
        now: float,
    ) -> Job:
        return Job(
            id=f"{self._prefix}{next(self._ids) % 16**12:012x}",
            app_id=app.id,
            url=webhook.url,
            order_key=order_key,
            body=encoded,
            events=names,
            headers=webhook.headers,
            tenant=self._is_tenant(app.id),
            created_at=now,
        )

    def _batch(self, app: App, webhook: Webhook, name: str, as_json: dict[str, object]) -> None:
        key = (app.id, webhook)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(app, webhook, self._monotonic() + BATCH_WINDOW)
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(BATCH_WINDOW, self._tick)
        batch.events.append(as_json)
        batch.names.append(name)
        if len(batch.events) >= BATCH_MAX:
            del self._batches[key]
            self._end(batch)

    def _tick(self) -> None:
        """Close the batches whose window has passed; wait for the next one."""
        self._timer = None
        now = self._monotonic()
        while self._batches:
            key, batch = next(iter(self._batches.items()))
            if batch.closes_at > now and batch.closes_at - now <= BATCH_WINDOW:
                self._timer = asyncio.get_running_loop().call_later(
                    batch.closes_at - now, self._tick
                )
                return
            del self._batches[key]  # due (or the clock went back: close it anyway)
            self._end(batch)

    def _end(self, batch: _Batch) -> None:
        now = self._clock()
        encoded = body(int(now * 1000), batch.events)
        order_key = f"{batch.app.id}|{batch.webhook.url}"
        names = tuple(batch.names)
        self._add(self._job(batch.app, batch.webhook, order_key, encoded, names, now))

    def _add(self, job: Job) -> None:
        self.made += 1
        if self.waiting >= self._buffer:
            if not self.dropped % 10_000:  # the first, then one line per 10,000
                log.warning(
                    "webhook jobs dropped: %d held while the queue cannot keep up or be "
                    "reached (%d dropped so far)",
                    self.waiting,
                    self.dropped + 1,
                )
            self.dropped += 1
            return
        self._pending.append(job)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Push what waits, in order, until nothing does; on a failure keep it and retry."""
        failing = False
        try:
            while self._pending:
                chunk = [
                    self._pending.popleft() for _ in range(min(PUSH_CHUNK, len(self._pending)))
                ]
                self._pushing = len(chunk)
                try:
                    await self._push(chunk)
                except Exception as error:  # any failure: keep the jobs, try again
                    self._pending.extendleft(reversed(chunk))
                    self._pushing = 0
                    self.push_failures += 1
                    if not failing:
                        log.warning(
                            "webhooks: jobs cannot be queued (%s); %d wait in memory, retrying "
                            "every %g s",
                            type(error).__name__,
                            len(self._pending),
                            self._retry_every,
                        )
                    failing = True
                    await asyncio.sleep(self._retry_every)
                    continue
                self._pushing = 0
                self.pushed += len(chunk)
                if failing:
                    log.warning("webhooks: jobs are queued again")
                    failing = False
        finally:
            self._task = None
