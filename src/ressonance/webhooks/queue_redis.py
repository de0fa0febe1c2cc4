"""The :class:`~ressonance.webhooks.base.JobQueue` in Redis: a stream with a consumer group, for
a cluster whose broker is Redis (https://redis.io/docs/latest/develop/data-types/streams/).

The client is a redis-py ``redis.asyncio.Redis`` replying bytes in RESP2, made by
:func:`ressonance.scaling.redis.client` (redis-py is imported there only); the queue owns it
and closes it in :meth:`RedisQueue.close`. Keys, with ``P`` the prefix::

    P:webhooks:jobs        stream, one entry per chunk: fields id, at, data (the entries packed,
                           base.pack), size
                           (an entry of an earlier build, one field ``job``, is a chunk of that
                           one job); consumer group webhooks
    P:webhooks:depth       the entries of the chunks in the stream (INCRBY/DECRBY)
    P:webhooks:pushed:W    the sequence number of writer W's last chunk in the stream (a chunk
                           id is a writer, 12 hex digits, and a sequence number, 8), expiring
                           a day after its last push
    P:webhooks:state:ID    hash job id -> its state as JSON, for the tried jobs of chunk ID
    P:webhooks:dead        hash job id -> the dead job as JSON
    P:webhooks:dead:index  sorted set job id -> dead_at (newest first, trimmed after 7 days)

The commands::

    start       XGROUP CREATE P:webhooks:jobs webhooks 0 MKSTREAM   (BUSYGROUP: exists, fine)
    push        per chunk, in one pipeline, EVAL of PUSH_SCRIPT: unless the writer's last
                sequence number is this chunk's or later (a push tried again after an
                unknown outcome: kept once),
                XADD P:webhooks:jobs * id .. at .. data .. size ..;
                INCRBY P:webhooks:depth size; SET P:webhooks:pushed:W seq EX 86400
    take        the entries pending for this node not returned yet (claimed by take_over, in
                stream order), then (no BLOCK: it never waits)
                XREADGROUP GROUP webhooks <node> COUNT n STREAMS P:webhooks:jobs >
                HGETALL P:webhooks:state:ID of each (one pipeline)
    save, ended HSET P:webhooks:state:ID <job id> <state json>
    dead        MULTI; HSET state (ended); HSET dead; ZADD dead:index; EXEC, then
                ZRANGEBYSCORE dead:index -inf (now-7d and MULTI; HDEL dead; ZREM index; EXEC
    finish      MULTI; XACK; XDEL; DEL P:webhooks:state:ID; DECRBY depth size; EXEC
    dead_letters ZREVRANGE dead:index a b WITHSCORES; HMGET dead <ids>  (pages, app filtered)
    replay      HGET dead <id>; MULTI; HDEL dead; ZREM dead:index; the push (a new entry:
                the end of the queue); EXEC
    depth       GET P:webhooks:depth                                 (waiting and taken)
    take_over   XAUTOCLAIM P:webhooks:jobs webhooks <node> 0 <cursor> COUNT 100 from 0-0
                until the cursor is 0-0: every pending entry of every consumer is this node's

A chunk taken stays in the stream, pending for this node's consumer, until :meth:`finish`
acknowledges and deletes it; a node killed meanwhile leaves it pending, and the next leader's
:meth:`take_over` claims it (at-least-once). Which stream entry a taken chunk is is kept in
memory: only the node that took a chunk finishes it. Two replays of one dead letter at the same
instant may both push it (at-least-once, as everywhere here).

Each command is bounded by ``timeout`` seconds. redis-py's connection and timeout errors (and
``OSError``) become :class:`~ressonance.storage.base.Unavailable`, its other errors
:class:`~ressonance.storage.base.StorageError`; they are recognised by their module, as this
unit does not import redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from ressonance.storage.base import StorageError, Unavailable
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

T = TypeVar("T")
GROUP = "webhooks"
OLD_FIELD = b"job"  # the one field of an entry of an earlier build: a job
OLD_PREFIX = "v3-"  # the id of the chunk made of such an entry
PUSHED_TTL = 86_400  # seconds a writer's last sequence number is kept after its last push
# KEYS: stream, depth, pushed:W; ARGV: sequence number (hex), size, ttl, field, value ...
PUSH_SCRIPT = """
local last = redis.call("GET", KEYS[3])
if last and tonumber(last, 16) >= tonumber(ARGV[1], 16) then return 0 end
redis.call("XADD", KEYS[1], "*", unpack(ARGV, 4))
redis.call("INCRBY", KEYS[2], ARGV[2])
redis.call("SET", KEYS[3], ARGV[1], "EX", ARGV[3])
return 1
"""
ENDED = json.dumps(JobState(ended=True).to_json())
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _chunk(entry_id: bytes, fields: dict[bytes, bytes]) -> Chunk:
    """The chunk of a stream entry; an entry of an earlier build (one job) a chunk of its own,
    named after the entry."""
    if OLD_FIELD in fields:
        job = job_json.loads(fields[OLD_FIELD])
        name = OLD_PREFIX + _text(entry_id).replace("-", "")
        return Chunk.of(name, job.created_at, [(job.app_id, JOB, job_json.dumps(job))])
    return unpack(_text(fields[b"id"]), float(fields[b"at"]), int(fields[b"size"]), fields[b"data"])


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
        self.depth_key = f"{prefix}:webhooks:depth"
        self.pushed_prefix = f"{prefix}:webhooks:pushed:"
        self.state_prefix = f"{prefix}:webhooks:state:"
        self.dead_jobs = f"{prefix}:webhooks:dead"
        self.dead_index = f"{prefix}:webhooks:dead:index"
        self._claimed: list[tuple[bytes, Chunk]] = []  # pending for this node, not returned yet
        self._entries: dict[str, bytes] = {}  # chunk id -> stream entry id, of the chunks taken

    async def start(self) -> None:
        await self._create_group()

    async def close(self) -> None:
        self._claimed.clear()
        self._entries.clear()
        with contextlib.suppress(Exception):
            await self._client.aclose()

    async def push(self, chunks: list[Chunk]) -> None:
        if chunks:  # in order, one round trip (each EVAL is atomic); packed off the loop
            packed = await asyncio.to_thread(lambda: [pack(chunk) for chunk in chunks])
            await self._pipeline(*map(self._push, chunks, packed))

    async def take(self, limit: int) -> list[Chunk]:
        if limit <= 0:
            return []
        wanted = limit - len(self._claimed)
        if wanted > 0:  # the new entries are pending for this node now: kept until returned
            self._claimed += await self._read(wanted)
        taken = self._claimed[:limit]
        if taken:
            states = await self._pipeline(
                *(("HGETALL", self.state_prefix + chunk.id) for _, chunk in taken)
            )
            for (_, chunk), saved in zip(taken, states, strict=True):
                for job_id, state in (saved or {}).items():
                    chunk.states[_text(job_id)] = JobState.from_json(json.loads(state))
        del self._claimed[: len(taken)]
        for entry_id, chunk in taken:
            self._entries[chunk.id] = entry_id
        return [chunk for _, chunk in taken]

    async def save(self, job: Job) -> None:
        state = json.dumps(job.state().to_json())
        await self._do(self._client.hset(self.state_prefix + job.chunk, job.id, state))

    async def ended(self, job: Job) -> None:
        await self._do(self._client.hset(self.state_prefix + job.chunk, job.id, ENDED))

    async def dead(self, job: Job, now: float) -> None:
        ended = [("HSET", self.state_prefix + job.chunk, job.id, ENDED)] if job.chunk else []
        await self._multi(
            *ended,
            ("HSET", self.dead_jobs, job.id, job_json.dumps(job)),
            ("ZADD", self.dead_index, now, job.id),
        )
        cutoff = now - DEAD_LETTER_DAYS * DAY
        old = await self._do(self._client.zrangebyscore(self.dead_index, "-inf", f"({cutoff}"))
        if old:
            await self._multi(("HDEL", self.dead_jobs, *old), ("ZREM", self.dead_index, *old))

    async def finish(self, chunk: Chunk) -> None:
        commands: list[tuple[Any, ...]] = [("DEL", self.state_prefix + chunk.id)]
        if not chunk.id.startswith(OLD_PREFIX):  # an earlier build's entry was not counted
            commands.append(("DECRBY", self.depth_key, chunk.size))
        entry_id = self._entries.pop(chunk.id, None)
        if entry_id is not None:
            commands += [("XACK", self.stream, GROUP, entry_id), ("XDEL", self.stream, entry_id)]
        await self._multi(*commands)

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
        chunk = job_json.replay_chunk(job_json.loads(value), now)
        await self._multi(
            ("HDEL", self.dead_jobs, job_id),
            ("ZREM", self.dead_index, job_id),
            self._push(chunk, pack(chunk)),
        )
        return job_json.chunk_job(chunk)

    async def depth(self) -> int:
        value = await self._do(self._client.get(self.depth_key))
        return max(0, int(value or 0))

    async def take_over(self) -> None:
        claimed: list[tuple[bytes, Chunk]] = []
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
                    claimed.append((entry_id, _chunk(entry_id, fields)))
            if cursor in (b"0-0", "0-0"):
                break
        claimed.sort(key=lambda item: _order(item[0]))
        self._claimed = claimed

    async def _read(self, count: int) -> list[tuple[bytes, Chunk]]:
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
            (entry_id, _chunk(entry_id, fields))
            for _stream, entries in reply or []
            for entry_id, fields in entries
        ]

    async def _create_group(self) -> None:
        try:
            await self._do(self._client.xgroup_create(self.stream, GROUP, "0", mkstream=True))
        except StorageError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _push(self, chunk: Chunk, data: bytes) -> tuple[Any, ...]:
        """The command that adds ``chunk`` (``data``: packed) at the end of the stream, once."""
        writer, sequence = chunk.id[:-8], chunk.id[-8:]
        fields = (
            ("id", chunk.id),
            ("at", repr(chunk.created_at)),
            ("data", data),
            ("size", chunk.size),
        )
        keys = (self.stream, self.depth_key, f"{self.pushed_prefix}{writer}")
        args = (sequence, chunk.size, PUSHED_TTL, *(item for pair in fields for item in pair))
        return ("EVAL", PUSH_SCRIPT, len(keys), *keys, *args)

    async def _pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Run ``commands`` in one round trip (no transaction)."""
        return await self._multi(*commands, transaction=False)

    async def _multi(self, *commands: tuple[Any, ...], transaction: bool = True) -> list[Any]:
        """Run ``commands`` in one MULTI/EXEC (or one plain pipeline)."""

        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=transaction) as pipe:
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
