"""The dead letters of a :class:`~ressonance.webhooks.base.JobQueue` as the management API shows
them (docs/webhooks.md, "Managing webhooks"): JSON (:meth:`DeadLetter.to_json`: header names
only, never the body), newest first; the queue's storage errors become the API's ``HttpError``
(503 when it cannot be reached)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ressonance.errors import HttpError
from ressonance.storage.base import StorageError, Unavailable
from ressonance.webhooks.base import JobQueue

MAX_LIMIT = 1000  # dead letters listed at most in one answer
T = TypeVar("T")


class DeadLetterBook:
    """Lists and replays the dead letters of ``queue``."""

    def __init__(self, queue: JobQueue, clock: Callable[[], float] = time.time) -> None:
        self.queue = queue
        self.clock = clock

    async def list(self, app_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest first, of one app or of all; at most ``limit`` (1..1000)."""
        limit = max(1, min(MAX_LIMIT, limit))
        letters = await _translated(self.queue.dead_letters(app_id, limit))
        return [letter.to_json() for letter in letters]

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
