"""A node's webhooks, put together (docs/webhooks.md): the node's events are recorded in
chunks (:class:`~ressonance.webhooks.recorder.Recorder`, on every node) kept by the durable
queue; the cluster's leader makes their jobs and posts them
(:class:`~ressonance.webhooks.dispatcher.Dispatcher`). :meth:`tick`, every
second, follows the leadership and reads the queue's depth for the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ressonance.apps.base import AppStore
from ressonance.webhooks.base import Job, JobQueue
from ressonance.webhooks.dispatcher import Dispatcher
from ressonance.webhooks.recorder import Recorder
from ressonance.webhooks.sender import Sender

log = logging.getLogger("ressonance.webhooks")

CLOSE_TIMEOUT = 5.0  # seconds a stopping node waits to hand its last events to the queue


class Webhooks:
    """The queue, the recorder (``recorder`` is the node's webhook sink) and the dispatcher."""

    def __init__(
        self,
        queue: JobQueue,
        apps: AppStore,
        is_tenant: Callable[[str], bool],
        allow_private: bool,
        is_leader: Callable[[], bool],
        latency: Callable[[float], None] | None = None,
        observe: Callable[[Job, str, str], None] | None = None,
    ) -> None:
        self.queue = queue
        self.recorder = Recorder(queue.push)
        self.dispatcher = Dispatcher(
            queue, Sender(), apps, allow_private, is_tenant, latency=latency, observe=observe
        )
        self._is_leader = is_leader
        self.leading = False
        self.depth = 0  # events in the queue at the last tick (-1: the queue could not tell)

    @property
    def dropped(self) -> int:
        """Events recorded here and dropped before the queue kept them (the buffer full)."""
        return self.recorder.dropped

    def outcomes(self) -> dict[tuple[str, str, str], int]:
        """(app id, event, delivered|retried|dead) → events, since the start."""
        return dict(self.dispatcher.outcomes)

    async def start(self) -> None:
        await self.queue.start()
        self.recorder.start()

    async def tick(self) -> None:
        """Start or stop posting as this node becomes or stops being the leader; the depth."""
        leading = self._is_leader()
        if leading and not self.leading:
            log.info("this node is the webhook leader: it posts the cluster's webhooks")
            self.dispatcher.start_leading()
        elif not leading and self.leading:
            log.info("another node is the webhook leader now")
            await self.dispatcher.stop_leading()
        self.leading = leading
        try:
            self.depth = await asyncio.wait_for(self.queue.depth(), 5.0)
        except Exception:  # a queue that cannot answer now: the metric says -1
            self.depth = -1

    async def close(self) -> None:
        """Stop posting, hand the last events to the queue (bounded), close the queue. Events
        not delivered stay in the queue for the next leader or the next start."""
        await self.dispatcher.stop_leading()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.recorder.close(), CLOSE_TIMEOUT)
        if self.recorder.waiting:
            log.warning(
                "%d webhook events not handed to the queue at shutdown", self.recorder.waiting
            )
        await self.queue.close()
