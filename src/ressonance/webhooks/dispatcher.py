"""Dispatcher: the cluster leader's delivery of webhook jobs (docs/webhooks.md, "Delivery").

Only the leader posts: :meth:`Dispatcher.start_leading` makes every job another node had taken
takeable again (:meth:`JobQueue.take_over`) and runs :meth:`Dispatcher.run`;
:meth:`Dispatcher.stop_leading` stops it (the jobs it held stay in the queue for the next
leader: at-least-once).

:meth:`Dispatcher.run` takes chunks from the queue (every :data:`POLL_EVERY` second, while
fewer than :data:`HOLD` jobs are held in memory), makes their jobs
(:func:`~ressonance.webhooks.jobs.expand`, with the apps as they are now) and puts them into
one FIFO line per ``order_key``; a chunk is finished (:meth:`JobQueue.finish`) when its last
job ends, and each job that ends before is marked (:meth:`JobQueue.ended`) so that the next
leader does not post it again. The events of an app that is gone or disabled when its chunk
is taken are dropped, counted in :attr:`Dispatcher.gone` and logged. It posts the head of a line
once its ``next_at`` has come, at most one attempt per line and :data:`CONCURRENCY` attempts
at once overall, so a failing receiver holds back the later jobs of its own line only. Each
attempt is signed with the app's oldest active key pair (``App.oldest``: during a rotation the
pair receivers knew first). What an attempt comes to:

- ``delivered`` → the job ends;
- ``retry`` → the job waits 1, 2, 4 ... 60 s (:meth:`Job.retried`, :meth:`JobQueue.save`),
  or becomes a dead letter (:meth:`JobQueue.dead`) :data:`GIVE_UP_AFTER` seconds after its first
  failed attempt (:meth:`Job.expired`);
- ``final`` (a 4xx but 408/429, a refused target, or an app that is gone or disabled) → a dead
  letter at once, so the operator sees it and can replay it (``dead`` ends the job too).

It never blocks the loop: every step is awaited, and between steps it sleeps until the earliest
``next_at``, an attempt's end or the next poll. Counters (:attr:`Dispatcher.outcomes`,
``failed``) are plain numbers read at scrape time; ``latency`` and ``observe`` are hooks for the
metrics and the dashboard's debug console.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from ressonance.apps.base import AppStore
from ressonance.models import App
from ressonance.webhooks.base import ATTEMPT_TIMEOUT, Chunk, Job, JobQueue
from ressonance.webhooks.jobs import expand
from ressonance.webhooks.sender import Outcome

CONCURRENCY = 16  # attempts at once
POLL_EVERY = 0.5  # seconds between two looks at the queue for new chunks
# jobs held in memory: no chunk is taken beyond (the rest wait in the queue, and are made into
# jobs only when there is room: a receiver that is behind costs no work for what waits)
HOLD = 1_000
TAKE = 2  # chunks taken at once (taken again at once while they come and there is room)
APP_GONE = "app gone"

log = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class _Taken:
    chunk: Chunk
    left: int  # its jobs not ended yet


class Poster(Protocol):
    """One attempt to post ``job``, signed with ``key``/``secret``; never raises for a network
    error (that is ``Outcome("retry", ...)``) and bounds itself to :data:`ATTEMPT_TIMEOUT`."""

    async def post(self, job: Job, key: str, secret: str, allow_private: bool) -> Outcome: ...


class Dispatcher:
    def __init__(
        self,
        queue: JobQueue,
        poster: Poster,
        apps: AppStore,
        allow_private: bool,
        is_tenant: Callable[[str], bool] = lambda app_id: False,
        clock: Callable[[], float] = time.time,
        *,
        concurrency: int = CONCURRENCY,
        poll_every: float = POLL_EVERY,
        latency: Callable[[float], None] | None = None,
        observe: Callable[[Job, str, str], None] | None = None,
    ) -> None:
        self._queue = queue
        self._poster = poster
        self._apps = apps
        self._allow_private = allow_private
        self._is_tenant = is_tenant  # whether an app's webhooks were set by a tenant
        self._clock = clock  # Unix time, as in Job.created_at and Job.next_at
        self._concurrency = concurrency
        self._poll_every = poll_every
        self.latency = latency  # seconds from a job's creation to its delivery
        # per attempt: (the job after it, delivered|retried|dead, the status or error)
        self.observe = observe
        self._lines: dict[str, deque[Job]] = {}  # order_key → its jobs, oldest first
        self._idle: list[tuple[float, int, str]] = []  # (next_at, seq, key) of idle lines
        self._seq = 0
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._held = 0
        self._chunks: dict[str, _Taken] = {}  # the chunks whose jobs are held, by id
        self._task: asyncio.Task[None] | None = None
        # (app_id, event name, delivered|retried|dead) → count
        self.outcomes: dict[tuple[str, str, str], int] = defaultdict(int)
        self.failed = 0  # jobs ended by a final answer (also counted as dead)
        self.gone = 0  # events dropped: their app was gone or disabled when taken
        self.queue_errors = 0

    @property
    def held(self) -> int:
        """Jobs held in memory (waiting for their turn or being posted)."""
        return self._held

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def depth(self) -> int:
        """Events in the queue, waiting or being tried."""
        return await self._queue.depth()

    def start_leading(self) -> None:
        """This node became the cluster's leader: take every pending job over and post."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._lead())

    async def stop_leading(self) -> None:
        """This node is no longer the leader: stop posting (attempts under way are cancelled;
        their jobs stay in the queue)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _lead(self) -> None:
        while True:
            try:
                await self._queue.take_over()
                break
            except Exception as error:
                self._queue_error("take over", error)
                await asyncio.sleep(self._poll_every * 2)
        await self.run()

    async def run(self) -> None:
        """Post jobs until cancelled."""
        next_poll = 0.0
        try:
            while True:
                now = self._clock()
                if now >= next_poll:
                    took = await self._take()
                    now = self._clock()
                    next_poll = now if took == TAKE else now + self._poll_every
                self._start_due(now)
                wait = next_poll - now
                if self._idle and len(self._running) < self._concurrency:
                    wait = min(wait, self._idle[0][0] - now)
                self._wake.clear()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                else:
                    await asyncio.sleep(0)
        finally:
            for task in self._running:
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            self._running.clear()
            self._lines.clear()
            self._idle.clear()
            self._chunks.clear()
            self._held = 0

    async def _take(self) -> int:
        """Take chunks while fewer than :data:`HOLD` jobs are held; the chunks taken."""
        if self._held >= HOLD:
            return 0
        try:
            chunks = await self._queue.take(TAKE)
        except Exception as error:
            self._queue_error("take", error)
            return 0
        for chunk in chunks:
            await asyncio.sleep(0)  # one chunk's expansion (≤ 1,000 events) per loop turn
            jobs = await self._expand(chunk)
            if jobs is None:
                continue
            if not jobs:
                await self._settle("finish", self._queue.finish(chunk))
                continue
            self._chunks[chunk.id] = _Taken(chunk, len(jobs))
            for job in jobs:
                line = self._lines.get(job.order_key)
                if line is None:
                    line = self._lines[job.order_key] = deque()
                    self._ready(job.order_key, job.next_at)
                line.append(job)
            self._held += len(jobs)
        return len(chunks)

    async def _expand(self, chunk: Chunk) -> list[Job] | None:
        """The jobs of ``chunk``; None when this build cannot read it (it stays in the queue,
        taken, until the next leader or restart: a newer build may read it)."""
        apps: dict[str, App | None] = {}
        for app_id in set(chunk.apps.split("\n")):
            while True:
                try:
                    apps[app_id] = await self._apps.by_id(app_id)
                    break
                except Exception as error:  # the app store cannot answer: wait for it
                    self._queue_error("app look-up", error)
                    await asyncio.sleep(self._poll_every * 2)
        try:
            jobs, gone = expand(chunk, apps, self._is_tenant)
        except Exception:  # a chunk this build cannot read: kept, said, not retried here
            log.exception("webhooks: chunk %s cannot be read; it stays in the queue", chunk.id)
            return None
        if gone:
            self.gone += gone
            log.warning("webhooks: %d event(s) dropped: their app is gone or disabled", gone)
        return jobs

    def _ready(self, key: str, at: float) -> None:
        self._seq += 1
        heapq.heappush(self._idle, (at, self._seq, key))

    def _start_due(self, now: float) -> None:
        loop = asyncio.get_running_loop()
        while self._idle and self._idle[0][0] <= now and len(self._running) < self._concurrency:
            key = heapq.heappop(self._idle)[2]
            task = loop.create_task(self._attempt(key))
            self._running.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _attempt(self, key: str) -> None:
        line = self._lines[key]
        job = line[0]
        outcome = await self._post(job)
        now = self._clock()
        waits = False
        if outcome.kind == "delivered":
            result = "delivered"
            job = dataclasses.replace(job, attempts=job.attempts + 1, last_error="")
            if self.latency is not None:
                self.latency(max(0.0, now - job.created_at))
            await self._end(job, None)
        elif outcome.kind == "retry" and not (job := job.retried(now, outcome.reason)).expired(now):
            result, waits = "retried", True
            line[0] = job
            await self._settle("save", self._queue.save(job))
        else:  # given up: retried for too long, or a final answer
            result = "dead"
            if outcome.kind == "final":
                job = dataclasses.replace(job, attempts=job.attempts + 1, last_error=outcome.reason)
                self.failed += 1
            await self._end(job, now)
        for name in job.events:
            self.outcomes[(job.app_id, name, result)] += 1
        self._notify(job, result, outcome.reason)
        if not waits:
            line.popleft()
            self._held -= 1
        if line:
            self._ready(key, line[0].next_at)
        else:
            del self._lines[key]

    async def _end(self, job: Job, dead_at: float | None) -> None:
        """``job`` ended (a dead letter when ``dead_at`` is given): its chunk is finished when
        it was its last job, else the job is marked ended."""
        if dead_at is not None:
            await self._settle("dead", self._queue.dead(job, dead_at))
        taken = self._chunks.get(job.chunk)
        if taken is None:
            return
        taken.left -= 1
        if taken.left <= 0:
            del self._chunks[job.chunk]
            await self._settle("finish", self._queue.finish(taken.chunk))
        elif dead_at is None:
            await self._settle("ended", self._queue.ended(job))

    async def _post(self, job: Job) -> Outcome:
        try:
            app = await self._apps.by_id(job.app_id)
        except Exception as error:
            return Outcome("retry", f"app store: {type(error).__name__}")
        if app is None or not app.enabled:
            return Outcome("final", APP_GONE)
        key, secret = app.oldest
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT + 1):
                # the operator's own webhooks (configuration) may reach private addresses;
                # a tenant's (the app store) only when webhooks_allow_private_targets is on
                allow = self._allow_private or not job.tenant
                return await self._poster.post(job, key, secret, allow)
        except TimeoutError:
            return Outcome("retry", "timeout")
        except Exception:
            log.exception("webhooks: posting job %s to app %s failed", job.id, job.app_id)
            return Outcome("retry", "internal error")

    async def _settle(self, what: str, step: Awaitable[None]) -> None:
        """Await a queue step; a failure is logged and left to the next leader (the job stays
        in the queue as it was: at worst it is posted again)."""
        try:
            await step
        except Exception as error:
            self._queue_error(what, error)

    def _notify(self, job: Job, result: str, reason: str) -> None:
        if self.observe is None:
            return
        try:
            self.observe(job, result, reason)
        except Exception:
            log.exception("webhooks: the attempt observer failed")

    def _queue_error(self, what: str, error: Exception) -> None:
        self.queue_errors += 1
        log.warning("webhooks: queue %s failed (%s)", what, type(error).__name__)
