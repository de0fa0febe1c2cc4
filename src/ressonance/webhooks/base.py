"""The webhook delivery's shared types and ports (docs/webhooks.md, "Delivery").

A :class:`Job` is one POST to make. Its body is fixed when it is made (so every retry sends the
same bytes and the same ``webhook-id``); it is signed at each attempt with the app's oldest
active key pair (a rotation during the retries is followed). Jobs with the same
:attr:`Job.order_key` are posted one after another, in the order they were pushed: an event
for a channel is not posted before an earlier one for that channel succeeded or was given up.

The :class:`JobQueue` port keeps jobs durably: in Redis (Streams with a consumer group) on a
cluster with a Redis broker, else in the app store's database (the SQLite file of a single
node, or PostgreSQL). Only the cluster's leader takes jobs and posts them
(:mod:`ressonance.webhooks.dispatcher`); when it dies, the next leader calls
:meth:`JobQueue.take_over` and posts what was left (at-least-once).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

RETRY_FIRST = 1.0  # seconds before the first retry; doubled each time
RETRY_MAX = 60.0  # the longest wait between two attempts
GIVE_UP_AFTER = 300.0  # seconds after the first attempt: the job becomes a dead letter
ATTEMPT_TIMEOUT = 5.0  # seconds for one attempt (connect, send, status line)
DEAD_LETTER_DAYS = 7


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
    created_at: float = 0.0  # Unix time the job was made
    attempts: int = 0
    next_at: float = 0.0  # Unix time of the next attempt (0: at once)
    last_error: str = ""  # the last attempt's status or error

    def retried(self, now: float, error: str) -> Job:
        """The job after a failed attempt: the next try after 1, 2, 4 ... 60 s."""
        attempts = self.attempts + 1
        wait = min(RETRY_MAX, RETRY_FIRST * 2 ** (attempts - 1))
        return dataclasses.replace(self, attempts=attempts, next_at=now + wait, last_error=error)

    def expired(self, now: float) -> bool:
        """Whether the job has been retried for :data:`GIVE_UP_AFTER` seconds."""
        return now - self.created_at >= GIVE_UP_AFTER


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
    """Durable webhook jobs. Every method may raise the storage errors of
    :mod:`ressonance.storage.base` (or their Redis equivalent, translated to them)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def push(self, jobs: list[Job]) -> None:
        """Keep ``jobs``, in this order; durable when it returns."""
        ...

    async def take(self, limit: int) -> list[Job]:
        """Up to ``limit`` jobs not taken yet, in push order, now taken by this node: they are
        not returned again until :meth:`take_over` (by the next leader) or a restart."""
        ...

    async def save(self, job: Job) -> None:
        """Record a failed attempt (``attempts``, ``next_at``, ``last_error``)."""
        ...

    async def done(self, job: Job) -> None:
        """The job was delivered (or ended for good with a final 4xx): forget it."""
        ...

    async def dead(self, job: Job, now: float) -> None:
        """Give the job up: forget it, keep it as a :class:`DeadLetter`; dead letters older
        than :data:`DEAD_LETTER_DAYS` days are deleted."""
        ...

    async def dead_letters(self, app_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first (of one app, or all)."""
        ...

    async def replay(self, job_id: str, now: float) -> Job | None:
        """Push a dead letter's job again (attempts reset, same id); None when unknown."""
        ...

    async def depth(self) -> int:
        """Jobs waiting or being tried."""
        ...

    async def take_over(self) -> None:
        """This node became the leader: every taken job not done becomes takeable again."""
        ...
