"""Virtual time for the running asyncio loop: ``asyncio.sleep``, ``wait_for``, ``call_later`` and
``asyncio.timeout`` run as usual, but whenever the loop would wait for its next timer with no
I/O ready, the clock jumps to that timer instead of sleeping. Five minutes of retries take
milliseconds, and the order of what happens is the loop's own.

Only for unit tests of code that touches no sockets (the selector is polled without waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

WALL_START = 1_800_000_000.0  # the wall clock's reading when virtual time starts


class VirtualClock:
    def __init__(self, start: float) -> None:
        self.now = start
        self.started = start

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        """Unix time that moves with the virtual clock (for Job.created_at and next_at)."""
        return WALL_START + (self.now - self.started)

    def elapsed(self) -> float:
        return self.now - self.started


@contextlib.contextmanager
def virtual_time() -> Iterator[VirtualClock]:
    loop = asyncio.get_running_loop()
    clock = VirtualClock(loop.time())
    selector: Any = loop._selector  # type: ignore[attr-defined]
    real_select = selector.select

    def select(timeout: float | None = None) -> Any:
        ready = real_select(0)
        if not ready:
            if timeout is None:  # no timer at all: a real, short wait (a stuck test times out)
                return real_select(0.05)
            clock.now += timeout
        return ready

    loop.time = clock.monotonic  # type: ignore[method-assign]
    selector.select = select
    try:
        yield clock
    finally:
        del loop.time
        selector.select = real_select
