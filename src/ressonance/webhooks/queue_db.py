"""The :class:`~ressonance.webhooks.base.JobQueue` in the app store's database (the SQLite file
of a single node, or PostgreSQL), through the storage port; the tables are migration 3 of
:mod:`ressonance.storage.migrations`.

One row of ``webhook_jobs`` per job, ``seq`` giving the push order; ``taken_by`` names the node
posting it (NULL: waiting). The statements, each of the writes in one transaction::

    push        INSERT INTO webhook_jobs (...) VALUES (...) ON CONFLICT (id) DO NOTHING
                  -- per job, in order; a push tried again after an unknown outcome (a lost
                  -- commit acknowledgement) keeps each job once
    take        SELECT ... WHERE taken_by IS NULL ORDER BY seq LIMIT n
                  [FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises]
                UPDATE webhook_jobs SET taken_by = node WHERE seq IN (...)
    save        UPDATE webhook_jobs SET attempts, next_at, last_error WHERE id = ?
    done        DELETE FROM webhook_jobs WHERE id = ?
    dead        DELETE FROM webhook_jobs WHERE id = ?
                INSERT INTO webhook_dead ... ON CONFLICT (id) DO UPDATE  -- the job as JSON
                DELETE FROM webhook_dead WHERE dead_at < now - 7 days
    replay      SELECT job FROM webhook_dead WHERE id = ?; DELETE it; INSERT the job again
                (attempts 0, next_at 0, created_at now: a new seq, the end of the queue)
    depth       SELECT count(*) FROM webhook_jobs                      -- waiting and taken
    take_over   UPDATE webhook_jobs SET taken_by = NULL WHERE taken_by IS NOT NULL

PostgreSQL text cannot hold a NUL: one in ``last_error`` (the receiver's words) is kept as
U+FFFD; the other text fields come from the validated app config and channel names.

The queue does not own the database: :meth:`DatabaseQueue.start` and
:meth:`DatabaseQueue.close` do nothing, whoever opened it closes it. Errors are the storage
port's (:class:`~ressonance.storage.base.Unavailable` when the database cannot be reached).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ressonance.storage.base import Database, Row
from ressonance.webhooks import job_json
from ressonance.webhooks.base import DEAD_LETTER_DAYS, DeadLetter, Job

_COLUMNS = (
    "id, app_id, url, order_key, body, events, headers, tenant, created_at, attempts,"
    " next_at, last_error"
)
_INSERT = (
    f"INSERT INTO webhook_jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO NOTHING"
)
_SELECT_WAITING = (
    f"SELECT seq, {_COLUMNS} FROM webhook_jobs WHERE taken_by IS NULL ORDER BY seq LIMIT ?"
)
_LOCK = {"sqlite": "", "postgres": " FOR UPDATE SKIP LOCKED"}
_DEAD = (
    "INSERT INTO webhook_dead (id, app_id, job, dead_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET app_id = excluded.app_id, job = excluded.job,"
    " dead_at = excluded.dead_at"
)
DAY = 86_400.0


def _params(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.app_id,
        job.url,
        job.order_key,
        job.body,
        json.dumps(list(job.events)),
        json.dumps([list(pair) for pair in job.headers]),
        job.tenant,
        job.created_at,
        job.attempts,
        job.next_at,
        _text(job.last_error),
    )


def _text(error: str) -> str:
    """An error message as PostgreSQL text can hold it: a NUL becomes U+FFFD."""
    return error.replace("\x00", "\ufffd")


def _job(row: Row) -> Job:
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


class DatabaseQueue:
    """Webhook jobs in ``db``, taken by the node ``node_id``; see the module docstring."""

    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id

    async def start(self) -> None:
        """Nothing: the tables come with the database's migrations."""

    async def close(self) -> None:
        """Nothing: the database is closed by whoever opened it."""

    async def push(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        async with self.db.transaction() as tx:  # one round trip for the whole chunk
            await tx.execute_many(_INSERT, [_params(job) for job in jobs])

    async def take(self, limit: int) -> list[Job]:
        if limit <= 0:
            return []
        async with self.db.transaction() as tx:
            rows = await tx.fetch(_SELECT_WAITING + _LOCK[self.db.dialect], limit)
            if rows:
                marks = ", ".join("?" * len(rows))
                await tx.execute(
                    f"UPDATE webhook_jobs SET taken_by = ? WHERE seq IN ({marks})",
                    self.node_id,
                    *(row["seq"] for row in rows),
                )
        return [_job(row) for row in rows]

    async def save(self, job: Job) -> None:
        await self.db.execute(
            "UPDATE webhook_jobs SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
            job.attempts,
            job.next_at,
            _text(job.last_error),
            job.id,
        )

    async def done(self, job: Job) -> None:
        await self.db.execute("DELETE FROM webhook_jobs WHERE id = ?", job.id)

    async def dead(self, job: Job, now: float) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM webhook_jobs WHERE id = ?", job.id)
            await tx.execute(_DEAD, job.id, job.app_id, job_json.dumps(job), now)
            await tx.execute(
                "DELETE FROM webhook_dead WHERE dead_at < ?", now - DEAD_LETTER_DAYS * DAY
            )

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
            job = dataclasses.replace(
                job_json.loads(rows[0]["job"]),
                attempts=0,
                next_at=0.0,
                last_error="",
                created_at=now,
            )
            await tx.execute("DELETE FROM webhook_dead WHERE id = ?", job_id)
            await tx.execute(_INSERT, *_params(job))
        return job

    async def depth(self) -> int:
        rows = await self.db.fetch("SELECT count(*) AS n FROM webhook_jobs")
        return int(rows[0]["n"])

    async def take_over(self) -> None:
        await self.db.execute("UPDATE webhook_jobs SET taken_by = NULL WHERE taken_by IS NOT NULL")
