"""MemoryQueue: the :class:`~ressonance.webhooks.base.JobQueue` contract kept in memory.

It is the reference implementation of the contract (what a durable queue must do, in a few
lines) and the queue of unit tests. It is never used by a running node: production keeps
chunks in Redis or in the app store's database (:mod:`ressonance.webhooks.queue_redis`,
:mod:`ressonance.webhooks.queue_db`), so that a restart or a killed node loses nothing; a process
that ends loses everything a MemoryQueue held.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from ressonance.webhooks.base import DEAD_LETTER_DAYS, Chunk, DeadLetter, Job, JobState
from ressonance.webhooks.job_json import chunk_job, replay_chunk

DAY = 86_400.0


class MemoryQueue:
    """Chunks in push order; ``take`` hands each out once until :meth:`take_over`."""

    def __init__(self) -> None:
        self._chunks: dict[str, Chunk] = {}  # every chunk not finished, in push order
        self._states: dict[str, dict[str, JobState]] = {}  # chunk id → job id → state
        self._fresh: deque[str] = deque()  # chunk ids not taken yet, in push order
        self._dead: dict[str, DeadLetter] = {}  # oldest first

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def push(self, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            if chunk.id not in self._chunks:
                self._fresh.append(chunk.id)
                self._chunks[chunk.id] = dataclasses.replace(chunk, states={})

    async def take(self, limit: int) -> list[Chunk]:
        taken: list[Chunk] = []
        while self._fresh and len(taken) < limit:
            chunk_id = self._fresh.popleft()
            chunk = self._chunks.get(chunk_id)
            if chunk is not None:  # None: finished since it was pushed
                states = dict(self._states.get(chunk_id, {}))
                taken.append(dataclasses.replace(chunk, states=states))
        return taken

    async def save(self, job: Job) -> None:
        self._state(job, job.state())

    async def ended(self, job: Job) -> None:
        self._state(job, JobState(ended=True))

    async def dead(self, job: Job, now: float) -> None:
        self._state(job, JobState(ended=True))
        self._dead.pop(job.id, None)
        self._dead[job.id] = DeadLetter(job.id, dataclasses.replace(job, chunk=""), now)
        too_old = now - DEAD_LETTER_DAYS * DAY
        for letter in [letter for letter in self._dead.values() if letter.dead_at < too_old]:
            del self._dead[letter.id]

    async def finish(self, chunk: Chunk) -> None:
        self._chunks.pop(chunk.id, None)
        self._states.pop(chunk.id, None)

    async def dead_letters(self, app_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        newest = sorted(self._dead.values(), key=lambda letter: letter.dead_at, reverse=True)
        return [letter for letter in newest if app_id in (None, letter.job.app_id)][:limit]

    async def replay(self, job_id: str, now: float) -> Job | None:
        """The dead letter's job pushed again, a chunk of its own, with its id and body, its
        attempts reset and ``created_at = now``."""
        letter = self._dead.pop(job_id, None)
        if letter is None:
            return None
        chunk = replay_chunk(letter.job, now)
        await self.push([chunk])
        return chunk_job(chunk)

    async def depth(self) -> int:
        return sum(chunk.size for chunk in self._chunks.values())

    async def take_over(self) -> None:
        self._fresh = deque(self._chunks)

    def _state(self, job: Job, state: JobState) -> None:
        if job.chunk in self._chunks:
            self._states.setdefault(job.chunk, {})[job.id] = state
