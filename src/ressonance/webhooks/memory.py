"""MemoryQueue: the :class:`~ressonance.webhooks.base.JobQueue` contract kept in memory.

It is the reference implementation of the contract (what a durable queue must do, in a few
lines) and the queue of unit tests. It is never used by a running node: production keeps jobs
in Redis or in the app store's database (:mod:`ressonance.webhooks.queue_redis`,
:mod:`ressonance.webhooks.queue_db`), so that a restart or a killed node loses nothing; a process
that ends loses everything a MemoryQueue held.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from ressonance.webhooks.base import DEAD_LETTER_DAYS, DeadLetter, Job

DAY = 86_400.0


class MemoryQueue:
    """Jobs in push order; ``take`` hands each out once until :meth:`take_over`."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}  # every job not done nor dead, in push order
        self._fresh: deque[str] = deque()  # ids not taken yet, in push order
        self._dead: dict[str, DeadLetter] = {}  # oldest first

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def push(self, jobs: list[Job]) -> None:
        for job in jobs:
            if job.id not in self._jobs:
                self._fresh.append(job.id)
            self._jobs[job.id] = job

    async def take(self, limit: int) -> list[Job]:
        taken: list[Job] = []
        while self._fresh and len(taken) < limit:
            job = self._jobs.get(self._fresh.popleft())
            if job is not None:  # None: done or dead since it was pushed
                taken.append(job)
        return taken

    async def save(self, job: Job) -> None:
        if job.id in self._jobs:
            self._jobs[job.id] = job

    async def done(self, job: Job) -> None:
        self._jobs.pop(job.id, None)

    async def dead(self, job: Job, now: float) -> None:
        self._jobs.pop(job.id, None)
        self._dead.pop(job.id, None)
        self._dead[job.id] = DeadLetter(job.id, job, now)
        too_old = now - DEAD_LETTER_DAYS * DAY
        for letter in [letter for letter in self._dead.values() if letter.dead_at < too_old]:
            del self._dead[letter.id]

    async def dead_letters(self, app_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        newest = sorted(self._dead.values(), key=lambda letter: letter.dead_at, reverse=True)
        return [letter for letter in newest if app_id in (None, letter.job.app_id)][:limit]

    async def replay(self, job_id: str, now: float) -> Job | None:
        """The dead letter's job pushed again with its id and body, its attempts reset and
        ``created_at = now`` (a replay gets five minutes of retries of its own)."""
        letter = self._dead.pop(job_id, None)
        if letter is None:
            return None
        job = dataclasses.replace(
            letter.job, attempts=0, next_at=0.0, last_error="", created_at=now
        )
        await self.push([job])
        return job

    async def depth(self) -> int:
        return len(self._jobs)

    async def take_over(self) -> None:
        self._fresh = deque(self._jobs)
