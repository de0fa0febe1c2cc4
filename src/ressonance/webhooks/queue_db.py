"""The :class:`~ressonance.webhooks.base.JobQueue` in the app store's database (the SQLite file
of a single node, or PostgreSQL), through the storage port; the tables are migrations 3 and 4
of :mod:`ressonance.storage.migrations`.

One row of ``webhook_chunks`` per chunk, ``seq`` giving the push order; ``taken_by`` names the
node posting its jobs (NULL: waiting). ``webhook_state`` holds the jobs of taken chunks that
were tried. The statements, each of the writes in one transaction::

    push        INSERT INTO webhook_chunks (id, created_at, data, size) VALUES (...)
                  ON CONFLICT (id) DO NOTHING -- data: the entries packed (base.pack), on a
                  -- worker thread
                  -- per chunk, in order; a push tried again after an unknown outcome keeps
                  -- each chunk once
    take        SELECT ... WHERE taken_by IS NULL ORDER BY seq LIMIT n
                  [FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises]
                UPDATE webhook_chunks SET taken_by = node WHERE seq IN (...)
                SELECT job_id, chunk_id, state FROM webhook_state WHERE chunk_id IN (...)
    save        upsert webhook_state (job_id, chunk_id, the state as JSON)
    ended       upsert webhook_state (job_id, chunk_id, '{"ended": true}')
    dead        the same upsert, INSERT INTO webhook_dead ... ON CONFLICT (id) DO UPDATE,
                DELETE FROM webhook_dead WHERE dead_at < now - 7 days
    finish      DELETE FROM webhook_state WHERE chunk_id = ?; DELETE the chunk
    replay      SELECT job FROM webhook_dead WHERE id = ?; DELETE it; INSERT a chunk holding
                the job (attempts 0, created_at now: a new seq, the end of the queue)
    depth       SELECT sum(size) FROM webhook_chunks                  -- waiting and taken
    take_over   UPDATE webhook_chunks SET taken_by = NULL WHERE taken_by IS NOT NULL

:meth:`DatabaseQueue.start` moves the jobs an earlier build left in ``webhook_jobs`` (migration
3) into chunks of one job each, in their order, so an upgrade loses none.

The queue does not own the database: :meth:`DatabaseQueue.close` does nothing, whoever opened it
closes it. Errors are the storage port's (:class:`~ressonance.storage.base.Unavailable` when the
database cannot be reached).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ressonance.storage.base import Database, Row
from ressonance.webhooks import job_json
from ressonance.webhooks.base import (
    DEAD_LETTER_DAYS,
    JOB,
    Chunk,
    DeadLetter,
    Job,
    JobState,
    pack,
    unpack,
)

_INSERT = (
    "INSERT INTO webhook_chunks (id, created_at, data, size)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_SELECT_WAITING = (
    "SELECT seq, id, created_at, data, size FROM webhook_chunks"
    " WHERE taken_by IS NULL ORDER BY seq LIMIT ?"
)
_LOCK = {"sqlite": "", "postgres": " FOR UPDATE SKIP LOCKED"}
_STATE = (
    "INSERT INTO webhook_state (job_id, chunk_id, state) VALUES (?, ?, ?)"
    " ON CONFLICT (chunk_id, job_id) DO UPDATE SET state = excluded.state"
)
_DEAD = (
    "INSERT INTO webhook_dead (id, app_id, job, dead_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET app_id = excluded.app_id, job = excluded.job,"
    " dead_at = excluded.dead_at"
)
_ENDED = json.dumps(JobState(ended=True).to_json())
DAY = 86_400.0


def _params(chunk: Chunk) -> tuple[Any, ...]:
    return (chunk.id, chunk.created_at, pack(chunk), chunk.size)


def _all_params(chunks: list[Chunk]) -> list[tuple[Any, ...]]:
    return [_params(chunk) for chunk in chunks]


def _chunk(row: Row) -> Chunk:
    return unpack(row["id"], float(row["created_at"]), int(row["size"]), bytes(row["data"]))


def _state_json(state: JobState) -> str:
    """A state as JSON text; PostgreSQL text cannot hold a NUL, which JSON escapes."""
    return json.dumps(state.to_json())


class DatabaseQueue:
    """Webhook chunks in ``db``, taken by the node ``node_id``; see the module docstring."""

    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id

    async def start(self) -> None:
        """Move the jobs of an earlier build (``webhook_jobs``) into chunks."""
        async with self.db.transaction() as tx:
            rows = await tx.fetch("SELECT * FROM webhook_jobs ORDER BY seq")
            if not rows:
                return
            for row in rows:
                job = _v3_job(row)
                entry = (job.app_id, JOB, job_json.dumps(job))
                chunk = Chunk.of(f"v3{row['seq']:018x}", job.created_at, [entry])
                await tx.execute(_INSERT, *_params(chunk))
            await tx.execute("DELETE FROM webhook_jobs")

    async def close(self) -> None:
        """Nothing: the database is closed by whoever opened it."""

    async def push(self, chunks: list[Chunk]) -> None:
        if not chunks:
            return
        rows = await asyncio.to_thread(_all_params, chunks)  # compressed off the loop
        await self.db.execute_many(_INSERT, rows)  # one round trip, one commit

    async def take(self, limit: int) -> list[Chunk]:
        if limit <= 0:
            return []
        async with self.db.transaction() as tx:
            rows = await tx.fetch(_SELECT_WAITING + _LOCK[self.db.dialect], limit)
            if not rows:
                return []
            marks = ", ".join("?" * len(rows))
            await tx.execute(
                f"UPDATE webhook_chunks SET taken_by = ? WHERE seq IN ({marks})",
                self.node_id,
                *(row["seq"] for row in rows),
            )
            chunks = [_chunk(row) for row in rows]
            states = await tx.fetch(
                f"SELECT job_id, chunk_id, state FROM webhook_state WHERE chunk_id IN ({marks})",
                *(chunk.id for chunk in chunks),
            )
        by_id = {chunk.id: chunk for chunk in chunks}
        for row in states:
            state = JobState.from_json(json.loads(row["state"]))
            by_id[row["chunk_id"]].states[row["job_id"]] = state
        return chunks

    async def save(self, job: Job) -> None:
        await self.db.execute(_STATE, job.id, job.chunk, _state_json(job.state()))

    async def ended(self, job: Job) -> None:
        await self.db.execute(_STATE, job.id, job.chunk, _ENDED)

    async def dead(self, job: Job, now: float) -> None:
        async with self.db.transaction() as tx:
            if job.chunk:
                await tx.execute(_STATE, job.id, job.chunk, _ENDED)
            await tx.execute(_DEAD, job.id, job.app_id, job_json.dumps(job), now)
            await tx.execute(
                "DELETE FROM webhook_dead WHERE dead_at < ?", now - DEAD_LETTER_DAYS * DAY
            )

    async def finish(self, chunk: Chunk) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM webhook_state WHERE chunk_id = ?", chunk.id)
            await tx.execute("DELETE FROM webhook_chunks WHERE id = ?", chunk.id)

    async def dead_letters(self, app_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        query = "SELECT job, dead_at FROM webhook_dead"
        params: list[Any] = []
        if app_id is not None:
            query += " WHERE app_id = ?"
            params.append(app_id)
        rows = await self.db.fetch(
            f"{query} ORDER BY dead_at DESC, id DESC LIMIT ?", *params, limit
        )
        letters = []
        for row in rows:
            job = job_json.loads(row["job"])
            letters.append(DeadLetter(job.id, job, float(row["dead_at"])))
        return letters

    async def replay(self, job_id: str, now: float) -> Job | None:
        async with self.db.transaction() as tx:
            rows = await tx.fetch("SELECT job FROM webhook_dead WHERE id = ?", job_id)
            if not rows:
                return None
            chunk = job_json.replay_chunk(job_json.loads(rows[0]["job"]), now)
            await tx.execute("DELETE FROM webhook_dead WHERE id = ?", job_id)
            await tx.execute(_INSERT, *_params(chunk))
        return job_json.chunk_job(chunk)

    async def depth(self) -> int:
        rows = await self.db.fetch("SELECT coalesce(sum(size), 0) AS n FROM webhook_chunks")
        return int(rows[0]["n"])

    async def take_over(self) -> None:
        await self.db.execute(
            "UPDATE webhook_chunks SET taken_by = NULL WHERE taken_by IS NOT NULL"
        )


def _v3_job(row: Row) -> Job:
    """A row of migration 3's ``webhook_jobs``."""
    return Job(
        id=row["id"],
        app_id=row["app_id"],
        url=row["url"],
        order_key=row["order_key"],
        body=bytes(row["body"]),
        events=tuple(json.loads(row["events"])),
        headers=tuple((name, value) for name, value in json.loads(row["headers"])),
        tenant=bool(row["tenant"]),
        created_at=float(row["created_at"]),
        attempts=int(row["attempts"]),
        next_at=float(row["next_at"]),
        last_error=row["last_error"],
    )
