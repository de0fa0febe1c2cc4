"""When the node's deferred work runs: at the end of this loop tick, or a while later."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def soon(callback: Callable[[], None], delay: float = 0.0) -> None:
    """Run ``callback`` at the end of this loop tick, or ``delay`` seconds later (at once when
    no loop runs: node tests drive the node without one)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:  # called outside the except block: a failure is not chained to this
        callback()
    elif delay > 0:
        loop.call_later(delay, callback)
    else:
        loop.call_soon(callback)
