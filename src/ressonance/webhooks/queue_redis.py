"""The :class:`~ressonance.webhooks.base.JobQueue` in Redis: a stream with a consumer group, for
a cluster whose broker is Redis (https://redis.io/docs/latest/develop/data-types/streams/).

The client is a redis-py ``redis.asyncio.Redis`` replying bytes in RESP2, made by
:func:`ressonance.scaling.redis.client` (redis-py is imported there only); the queue owns it
and closes it in :meth:`RedisQueue.close`. Keys, with ``P`` the prefix::

    P:webhooks:jobs        stream, one entry per job: field ``job`` = the job as JSON (body in
                           base64, :mod:`ressonance.webhooks.job_json`); consumer group webhooks
    P:webhooks:state       hash job id -> {"attempts", "next_at", "last_error"} (saved retries)
    P:webhooks:dead        hash job id -> the dead job as JSON
    P:webhooks:dead:index  sorted set job id -> dead_at (newest first, trimmed after 7 days)

The commands::

    start       XGROUP CREATE P:webhooks:jobs webhooks 0 MKSTREAM   (BUSYGROUP: exists, fine)
    push        MULTI; XADD P:webhooks:jobs * job <json> ...; EXEC
    take        the entries pending for this node not returned yet (claimed by take_over, in
                stream order), then (no BLOCK: it never waits)
                XREADGROUP GROUP webhooks <node> COUNT n STREAMS P:webhooks:jobs >
                HMGET P:webhooks:state <ids> (a claimed job's saved attempts)
    save        HSET P:webhooks:state <id> <state json>
    done        MULTI; XACK; XDEL; HDEL P:webhooks:state <id>; EXEC
    dead        MULTI; XACK; XDEL; HDEL state; HSET dead; ZADD dead:index; EXEC, then
                ZRANGEBYSCORE dead:index -inf (now-7d and MULTI; HDEL dead; ZREM index; EXEC
    dead_letters ZREVRANGE dead:index a b WITHSCORES; HMGET dead <ids>  (pages, app filtered)
    replay      HGET dead <id>; MULTI; HDEL dead; ZREM dead:index; XADD (a new entry: the end
                of the queue); EXEC
    depth       XLEN P:webhooks:jobs                                 (waiting and taken)
    take_over   XAUTOCLAIM P:webhooks:jobs webhooks <node> 0 <cursor> COUNT 100 from 0-0
                until the cursor is 0-0: every pending entry of every consumer is this node's

A job taken stays in the stream, pending for this node's consumer, until :meth:`done` or
:meth:`dead` acknowledge and delete it; a node killed meanwhile leaves it pending, and the
next leader's :meth:`take_over` claims it (at-least-once). Which stream entry a taken job is
is kept in memory: only the node that took a job ends it. Two replays of one dead letter at
the same instant may both push it (at-least-once, as everywhere here).

Each command is bounded by ``timeout`` seconds. redis-py's connection and timeout errors (and
``OSError``) become :class:`~ressonance.storage.base.Unavailable`, its other errors
:class:`~ressonance.storage.base.StorageError`; they are recognised by their module, as this
unit does not import redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from ressonance.storage.base import StorageError, Unavailable
from ressonance.webhooks import job_json
from ressonance.webhooks.base import DEAD_LETTER_DAYS, DeadLetter, Job

T = TypeVar("T")
GROUP = "webhooks"
FIELD = b"job"
CLAIM_PAGE = 100  # entries per XAUTOCLAIM
LIST_PAGE = 200  # dead letters per ZREVRANGE
DAY = 86_400.0
_UNAVAILABLE_NAMES = {"ConnectionError", "TimeoutError"}


def _from_redis(kind: type) -> bool:
    """Whether ``kind`` is a class of redis-py."""
    return kind.__module__.split(".")[0] == "redis"


def _translate(error: Exception) -> StorageError:
    """A redis-py error (or ``OSError``) as the storage port's."""
    names = {cls.__name__ for cls in type(error).__mro__ if _from_redis(cls)}
    if isinstance(error, OSError) or names & _UNAVAILABLE_NAMES:
        return Unavailable(f"redis: {type(error).__name__}: {error}")
    return StorageError(f"redis: {error}")


def _order(entry_id: bytes) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as a sortable pair."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)


class RedisQueue:
    """Webhook jobs in Redis under ``prefix``, taken by the node ``node_id``; see the module
    docstring. ``client`` is a ``redis.asyncio.Redis`` (bytes replies)."""

    def __init__(self, client: Any, prefix: str, node_id: str, *, timeout: float = 5.0) -> None:
        self._client = client
        self.node_id = node_id
        self.timeout = timeout
        self.stream = f"{prefix}:webhooks:jobs"
        self.state = f"{prefix}:webhooks:state"
        self.dead_jobs = f"{prefix}:webhooks:dead"
        self.dead_index = f"{prefix}:webhooks:dead:index"
        self._claimed: list[tuple[bytes, Job]] = []  # pending for this node, not returned yet
        self._entries: dict[str, bytes] = {}  # job id -> stream entry id, of the jobs taken

    async def start(self) -> None:
        await self._create_group()

    async def close(self) -> None:
        self._claimed.clear()
        self._entries.clear()
        with contextlib.suppress(Exception):
            await self._client.aclose()

    async def push(self, jobs: list[Job]) -> None:
        if jobs:
            await self._multi(
                *(("XADD", self.stream, "*", FIELD, job_json.dumps(job)) for job in jobs)
            )

    async def take(self, limit: int) -> list[Job]:
        if limit <= 0:
            return []
        wanted = limit - len(self._claimed)
        if wanted > 0:  # the new entries are pending for this node now: kept until returned
            self._claimed += await self._read(wanted)
        taken = self._claimed[:limit]
        jobs = await self._with_state([job for _, job in taken])
        del self._claimed[: len(taken)]
        for (entry_id, _), job in zip(taken, jobs, strict=True):
            self._entries[job.id] = entry_id
        return jobs

    async def save(self, job: Job) -> None:
        state = {"attempts": job.attempts, "next_at": job.next_at, "last_error": job.last_error}
        await self._do(self._client.hset(self.state, job.id, json.dumps(state)))

    async def done(self, job: Job) -> None:
        await self._multi(*self._forget(job))

    async def dead(self, job: Job, now: float) -> None:
        await self._multi(
            *self._forget(job),
            ("HSET", self.dead_jobs, job.id, job_json.dumps(job)),
            ("ZADD", self.dead_index, now, job.id),
        )
        cutoff = now - DEAD_LETTER_DAYS * DAY
        old = await self._do(self._client.zrangebyscore(self.dead_index, "-inf", f"({cutoff}"))
        if old:
            await self._multi(("HDEL", self.dead_jobs, *old), ("ZREM", self.dead_index, *old))

    async def dead_letters(self, app_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        start = 0
        while len(letters) < limit:
            page = await self._do(
                self._client.zrevrange(
                    self.dead_index, start, start + LIST_PAGE - 1, withscores=True
                )
            )
            if not page:
                break
            values = await self._do(self._client.hmget(self.dead_jobs, [id_ for id_, _ in page]))
            for (_, dead_at), value in zip(page, values, strict=True):
                if value is None:  # trimmed meanwhile
                    continue
                job = job_json.loads(value)
                if app_id is None or job.app_id == app_id:
                    letters.append(DeadLetter(job.id, job, float(dead_at)))
            start += LIST_PAGE
        return letters[:limit]

    async def replay(self, job_id: str, now: float) -> Job | None:
        value = await self._do(self._client.hget(self.dead_jobs, job_id))
        if value is None:
            return None
        job = dataclasses.replace(
            job_json.loads(value), attempts=0, next_at=0.0, last_error="", created_at=now
        )
        await self._multi(
            ("HDEL", self.dead_jobs, job_id),
            ("ZREM", self.dead_index, job_id),
            ("HDEL", self.state, job_id),
            ("XADD", self.stream, "*", FIELD, job_json.dumps(job)),
        )
        return job

    async def depth(self) -> int:
        return int(await self._do(self._client.xlen(self.stream)))

    async def take_over(self) -> None:
        claimed: list[tuple[bytes, Job]] = []
        cursor: bytes = b"0-0"
        while True:
            reply = await self._do(
                self._client.xautoclaim(
                    self.stream, GROUP, self.node_id, 0, cursor, count=CLAIM_PAGE
                )
            )
            cursor, entries = reply[0], reply[1]
            for entry_id, fields in entries:
                if entry_id is not None and fields:  # None: deleted meanwhile (Redis 6.2)
                    claimed.append((entry_id, job_json.loads(fields[FIELD])))
            if cursor in (b"0-0", "0-0"):
                break
        claimed.sort(key=lambda item: _order(item[0]))
        self._claimed = claimed

    async def _read(self, count: int) -> list[tuple[bytes, Job]]:
        """Up to ``count`` entries never delivered to the group, now pending for this node."""
        read = self._client.xreadgroup
        try:
            reply = await self._do(read(GROUP, self.node_id, {self.stream: ">"}, count=count))
        except StorageError as error:
            if "NOGROUP" not in str(error):
                raise
            await self._create_group()  # the stream was lost (a Redis without persistence)
            reply = await self._do(read(GROUP, self.node_id, {self.stream: ">"}, count=count))
        return [
            (entry_id, job_json.loads(fields[FIELD]))
            for _stream, entries in reply or []
            for entry_id, fields in entries
        ]

    async def _create_group(self) -> None:
        try:
            await self._do(self._client.xgroup_create(self.stream, GROUP, "0", mkstream=True))
        except StorageError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _forget(self, job: Job) -> list[tuple[Any, ...]]:
        """The commands that remove a taken job from the stream and its state."""
        commands: list[tuple[Any, ...]] = [("HDEL", self.state, job.id)]
        entry_id = self._entries.pop(job.id, None)
        if entry_id is not None:
            commands += [("XACK", self.stream, GROUP, entry_id), ("XDEL", self.stream, entry_id)]
        return commands

    async def _with_state(self, jobs: list[Job]) -> list[Job]:
        """``jobs`` with the attempts :meth:`save` recorded for them."""
        if not jobs:
            return []
        states = await self._do(self._client.hmget(self.state, [job.id for job in jobs]))
        out = []
        for job, state in zip(jobs, states, strict=True):
            if state is not None:
                saved = json.loads(state)
                job = dataclasses.replace(
                    job,
                    attempts=int(saved["attempts"]),
                    next_at=float(saved["next_at"]),
                    last_error=str(saved["last_error"]),
                )
            out.append(job)
        return out

    async def _multi(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Run ``commands`` in one MULTI/EXEC."""

        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=True) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                result: list[Any] = await pipe.execute()
                return result

        return await self._do(run())

    async def _do(self, operation: Awaitable[T]) -> T:
        """Await one Redis operation within ``timeout``, its errors translated."""
        try:
            async with asyncio.timeout(self.timeout):
                return await operation
        except TimeoutError:
            raise Unavailable(f"redis: no answer within {self.timeout} s") from None
        except Exception as error:
            if not (_from_redis(type(error)) or isinstance(error, OSError)):
                raise
            raise _translate(error) from None
