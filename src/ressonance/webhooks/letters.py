"""The dead letters of a :class:`~ressonance.webhooks.base.JobQueue` as the management API and
``ressonance apps dead-letters`` show them (docs/webhooks.md, "Managing webhooks"): JSON, newest
first, the webhook's header names only (their values may hold tokens), never the body; the
queue's storage errors become the API's ``HttpError`` (503 when it cannot be reached)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ressonance.errors import HttpError
from ressonance.storage.base import StorageError, Unavailable
from ressonance.webhooks.base import DeadLetter, JobQueue

MAX_LIMIT = 1000  # dead letters listed at most in one answer
T = TypeVar("T")


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter: what was to be posted where, and why it was given up."""
    job = letter.job
    return {
        "id": letter.id,
        "app_id": job.app_id,
        "url": job.url,
        "events": list(job.events),
        "headers": [name for name, _ in job.headers],
        "attempts": job.attempts,
        "last_error": job.last_error,
        "created_at": job.created_at,
        "dead_at": letter.dead_at,
    }


class DeadLetterBook:
    """Lists and replays the dead letters of ``queue``."""

    def __init__(self, queue: JobQueue, clock: Callable[[], float] = time.time) -> None:
        self.queue = queue
        self.clock = clock

    async def list(self, app_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest first, of one app or of all; at most ``limit`` (1..1000)."""
        limit = max(1, min(MAX_LIMIT, limit))
        letters = await _translated(self.queue.dead_letters(app_id, limit))
        return [letter_json(letter) for letter in letters]

    async def replay(self, letter_id: str) -> bool:
        """Queue the letter's job again (attempts reset, same ``webhook-id``); False when no
        dead letter has this id."""
        return await _translated(self.queue.replay(letter_id, self.clock())) is not None


async def _translated(call: Awaitable[T]) -> T:
    try:
        return await call
    except Unavailable:
        raise HttpError(503, "The webhook queue cannot be reached: retry later") from None
    except StorageError:
        raise HttpError(500, "The webhook queue refused the request") from None
