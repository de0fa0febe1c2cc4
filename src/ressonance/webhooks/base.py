"""The webhook delivery's shared types and ports (docs/webhooks.md, "Delivery").

A node records its webhook events as they happen, cheaply: one entry per event (the app id, a
tag, a text), gathered for :data:`CHUNK_EVERY` seconds into a :class:`Chunk`, which the
:class:`JobQueue` keeps durably as one record (:mod:`ressonance.webhooks.recorder`). The
cluster's leader takes chunks in push order and turns each into its jobs only then
(:func:`ressonance.webhooks.jobs.expand`): the work of a webhook is paid at the pace it is
posted, not on the event loop's hot path, and a receiver that is down leaves chunks waiting,
not jobs in memory.

A :class:`Job` is one POST to make. Its id, its body and its ``webhook-id`` follow from its
chunk, so a chunk expanded again (by the next leader) gives the same jobs; it is signed at each
attempt with the app's oldest active key pair (a rotation during the retries is followed). Jobs
with the same :attr:`Job.order_key` are posted one after another, in the order of their chunks
and entries: an event for a channel is not posted before an earlier one for that channel
succeeded or was given up.

The :class:`JobQueue` port keeps chunks and the state of their jobs: in Redis (Streams with a
consumer group) on a cluster with a Redis broker, else in the app store's database (the SQLite
file of a single node, or PostgreSQL). Only the leader takes chunks and posts
(:mod:`ressonance.webhooks.dispatcher`); when it dies, the next leader calls
:meth:`JobQueue.take_over` and posts what was left (at-least-once).
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

RETRY_FIRST = 1.0  # seconds before the first retry; doubled each time
RETRY_MAX = 60.0  # the longest wait between two attempts
GIVE_UP_AFTER = 300.0  # seconds after the first attempt: the job becomes a dead letter
ATTEMPT_TIMEOUT = 5.0  # seconds for one attempt (connect, send, status line)
DEAD_LETTER_DAYS = 7
CHUNK_EVERY = 0.1  # seconds of a node's events in one chunk
CHUNK_MAX = 1000  # entries in one chunk at most (a chunk is cut early when it has as many)

# An entry's tag: a socket id (the text is the client event's frame, as sent to subscribers),
EVENT = "e"  # the text is a webhook event's JSON (WebhookEvent.to_json)
JOB = "j"  # the text is a whole job (ressonance.webhooks.job_json): a replayed dead letter


@dataclass(slots=True)
class Chunk:
    """A node's webhook events of a short time, kept as one durable record. Entry ``i`` is
    line ``i`` of :attr:`apps`, :attr:`tags` and :attr:`texts` (JSON text holds no raw
    newline, app ids and socket ids none either)."""

    # unique: 20 hex digits, its writer (12: a recorder, random per process) and the writer's
    # sequence number (8), which a queue may use to keep a chunk pushed twice once
    id: str
    created_at: float  # Unix time the chunk was cut: its events' time_ms
    apps: str  # each entry's app id, "\n"-joined
    tags: str  # each entry's tag (EVENT, JOB or a socket id), "\n"-joined
    texts: str  # each entry's text, "\n"-joined
    size: int  # entries
    # set by JobQueue.take: the saved state of its jobs that were tried (job id → state)
    states: dict[str, JobState] = dataclasses.field(default_factory=dict)

    def entries(self) -> list[tuple[str, str, str]]:
        """(app id, tag, text) of every entry, in order."""
        return list(
            zip(
                self.apps.split("\n"),
                self.tags.split("\n"),
                self.texts.split("\n"),
                strict=True,
            )
        )

    @classmethod
    def of(cls, chunk_id: str, created_at: float, entries: list[tuple[str, str, str]]) -> Chunk:
        apps, tags, texts = zip(*entries, strict=True)
        return cls(
            chunk_id,
            created_at,
            "\n".join(apps),
            "\n".join(tags),
            "\n".join(texts),
            len(entries),
        )


_SEPARATOR = "\x1e"  # between a chunk's three columns when packed (JSON escapes it)


def pack(chunk: Chunk) -> bytes:
    """A chunk's entries as a queue keeps them: the three columns, UTF-8, zlib level 1 (the
    frames of client events shrink several times over: the queue's writes and memory follow,
    for about 0.1 µs per event of compression, off the event loop)."""
    text = _SEPARATOR.join((chunk.apps, chunk.tags, chunk.texts))
    return zlib.compress(text.encode(), 1)


def unpack(chunk_id: str, created_at: float, size: int, data: bytes) -> Chunk:
    """The chunk :func:`pack` packed."""
    apps, tags, texts = zlib.decompress(data).decode().split(_SEPARATOR)
    return Chunk(chunk_id, created_at, apps, tags, texts, size)


@dataclass(frozen=True, slots=True)
class JobState:
    """What a queue keeps of a job of a taken chunk: its retries, or that it ended."""

    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""
    first_at: float = 0.0
    ended: bool = False  # delivered, or a dead letter: not posted again

    def to_json(self) -> dict[str, Any]:
        if self.ended:
            return {"ended": True}
        return {
            "attempts": self.attempts,
            "next_at": self.next_at,
            "last_error": self.last_error,
            "first_at": self.first_at,
        }

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> JobState:
        if fields.get("ended"):
            return cls(ended=True)
        return cls(
            int(fields["attempts"]),
            float(fields["next_at"]),
            str(fields["last_error"]),
            float(fields.get("first_at", 0.0)),
        )


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a call per field,
class Job:  # and a job is made per event; treat it as immutable (dataclasses.replace)
    """One POST to make."""

    id: str  # the ``webhook-id`` header: stable across retries ("msg_" + 32 hex digits)
    app_id: str
    url: str
    order_key: str  # jobs with the same key are posted in push order, one at a time
    body: bytes  # {"time_ms": ..., "events": [...]}, exactly as posted
    events: tuple[str, ...]  # the names of the events in the body, for metrics
    headers: tuple[tuple[str, str], ...] = ()  # the webhook's own headers
    tenant: bool = False  # set through the management API: private targets refused
    created_at: float = 0.0  # Unix time of its events (its chunk's)
    attempts: int = 0
    next_at: float = 0.0  # Unix time of the next attempt (0: at once)
    last_error: str = ""  # the last attempt's status or error
    first_at: float = 0.0  # Unix time of the first failed attempt (0: none yet)
    chunk: str = ""  # the id of the chunk it came from (set when expanded)

    def retried(self, now: float, error: str) -> Job:
        """The job after a failed attempt: the next try after 1, 2, 4 ... 60 s."""
        attempts = self.attempts + 1
        wait = min(RETRY_MAX, RETRY_FIRST * 2 ** (attempts - 1))
        return dataclasses.replace(
            self,
            attempts=attempts,
            next_at=now + wait,
            last_error=error,
            first_at=self.first_at or now,
        )

    def expired(self, now: float) -> bool:
        """Whether the job has been retried for :data:`GIVE_UP_AFTER` seconds since its first
        failed attempt (time spent waiting in the queue before it does not count)."""
        return self.first_at > 0 and now - self.first_at >= GIVE_UP_AFTER

    def state(self) -> JobState:
        return JobState(self.attempts, self.next_at, self.last_error, self.first_at)

    def with_state(self, state: JobState) -> Job:
        return dataclasses.replace(
            self,
            attempts=state.attempts,
            next_at=state.next_at,
            last_error=state.last_error,
            first_at=state.first_at,
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job given up: kept :data:`DEAD_LETTER_DAYS` days, listed and replayable."""

    id: str  # the job's id
    job: Job  # with its attempts and last error
    dead_at: float

    def to_json(self) -> dict[str, Any]:
        """As the management API lists it: the webhook's header names, never their values
        (they may hold tokens), and never the body."""
        job = self.job
        return {
            "id": self.id,
            "app_id": job.app_id,
            "url": job.url,
            "events": list(job.events),
            "headers": [name for name, _ in job.headers],
            "attempts": job.attempts,
            "last_error": job.last_error,
            "created_at": job.created_at,
            "dead_at": self.dead_at,
        }


class JobQueue(Protocol):
    """Durable webhook chunks and the state of their jobs. Every method may raise the storage
    errors of :mod:`ressonance.storage.base` (or their Redis equivalent, translated to them)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def push(self, chunks: list[Chunk]) -> None:
        """Keep ``chunks``, in order, after the chunks pushed before them (one transaction);
        durable when it returns. A push tried again (an unknown outcome) keeps each once."""
        ...

    async def take(self, limit: int) -> list[Chunk]:
        """Up to ``limit`` chunks not taken yet, in push order, now taken by this node, each
        with the saved :attr:`Chunk.states` of its jobs: they are not returned again until
        :meth:`take_over` (by the next leader) or a restart."""
        ...

    async def save(self, job: Job) -> None:
        """Record a failed attempt of a job of a taken chunk (its :meth:`Job.state`)."""
        ...

    async def ended(self, job: Job) -> None:
        """A job of a taken chunk was delivered (or ended with a final 4xx), while other jobs
        of its chunk remain: it is not posted again after a take-over."""
        ...

    async def dead(self, job: Job, now: float) -> None:
        """Give a job up: it ends (as :meth:`ended`) and is kept as a :class:`DeadLetter`;
        dead letters older than :data:`DEAD_LETTER_DAYS` days are deleted."""
        ...

    async def finish(self, chunk: Chunk) -> None:
        """Every job of ``chunk`` ended: forget the chunk and the states of its jobs."""
        ...

    async def dead_letters(self, app_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first (of one app, or all)."""
        ...

    async def replay(self, job_id: str, now: float) -> Job | None:
        """Push a dead letter's job again (a chunk of its own: attempts reset, same id and
        body); None when unknown."""
        ...

    async def depth(self) -> int:
        """Entries of the chunks not finished (events waiting or being posted)."""
        ...

    async def take_over(self) -> None:
        """This node became the leader: every taken chunk not finished becomes takeable
        again."""
        ...
