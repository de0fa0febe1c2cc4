"""Tracebacks of unexpected exceptions, rate-limited so that no client can flood the log.

An unexpected exception is a bug, and its traceback is what fixes it; but if a client can
trigger it, it can trigger it thousands of times a second. :class:`FaultLog` writes at most
``limit`` tracebacks per ``interval`` seconds; past that it only counts, and one summary line
says how many it left out when the interval ends (docs/security.md "Input validation").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

TRACEBACKS_PER_INTERVAL = 10
INTERVAL = 60.0


class FaultLog:
    """``exception(message, *args)`` in place of ``logger.exception``, with a budget."""

    __slots__ = ("_clock", "_logged", "_logger", "_started", "_suppressed", "interval", "limit")

    def __init__(
        self,
        logger: logging.Logger,
        limit: int = TRACEBACKS_PER_INTERVAL,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self.limit = limit
        self.interval = interval
        self._clock = clock
        self._started = -interval  # the current interval's start
        self._logged = 0
        self._suppressed = 0

    def exception(
        self, message: str, *args: object, extra: dict[str, object] | None = None
    ) -> None:
        """Log the exception being handled with its traceback, or count it past the budget
        (``extra``: fields for structured logs, such as ``app_id`` and ``socket_id``)."""
        now = self._clock()
        if now - self._started >= self.interval:
            self.summarize()
            self._started = now
            self._logged = 0
        if self._logged < self.limit:
            self._logged += 1
            self._logger.error(message, *args, exc_info=True, extra=extra)
            return
        self._suppressed += 1
        if self._suppressed == 1:
            self._summarize_later(self._started + self.interval - now)

    def summarize(self) -> None:
        """One line for the exceptions counted but not logged since the last summary."""
        if self._suppressed:
            self._logger.error(
                "%d more unexpected exceptions without a traceback (at most %d tracebacks "
                "every %g s)",
                self._suppressed,
                self.limit,
                self.interval,
            )
            self._suppressed = 0

    def _summarize_later(self, delay: float) -> None:
        """The summary at the end of this interval, even if no exception comes after it (when
        no loop runs, the next exception after the interval writes it)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(max(0.0, delay), self.summarize)
