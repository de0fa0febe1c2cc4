"""Give memory back to the operating system after many connections have gone.

CPython and the C allocator keep freed memory for reuse: after a crowd of clients leaves (a
deploy elsewhere, a traffic peak ending), a node would otherwise stay near its peak RSS. Once the
number of connections has fallen far below its peak and stopped falling, :class:`Reclaimer`
runs a full garbage collection (it also empties CPython's free lists) and asks glibc to return
its free pages (``malloc_trim``). That costs milliseconds, so it runs only after such a drop,
never on the hot path. What it cannot return is CPython's own small-object arenas that a few
surviving objects keep alive (docs/performance.md, "Memory after all clients left").
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable

from ressonance.libc import libc

log = logging.getLogger("ressonance")

MIN_DROP = 1000  # connections: smaller swings are not worth a full collection
MAX_WAIT_TICKS = 10  # reclaim even if connections are still trickling away after this many


def _load_malloc_trim() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``; a no-op where the C library has none (musl, macOS)."""
    trim = getattr(libc(), "malloc_trim", None)
    if trim is None:
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def rss_mib() -> float | None:
    """This process's resident memory in MiB (Linux), None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class Reclaimer:
    """Call :meth:`observe` with the connection count about once a second. It reclaims memory
    once the count has dropped by ``min_drop`` or more and to half its peak or less, and has
    stopped falling (or kept falling for ``max_wait`` calls)."""

    def __init__(
        self,
        min_drop: int = MIN_DROP,
        max_wait: int = MAX_WAIT_TICKS,
        trim: Callable[[], object] | None = None,
        collect: Callable[[], object] = gc.collect,
    ) -> None:
        self.min_drop = min_drop
        self.max_wait = max_wait
        self.peak = 0
        self.reclaims = 0
        self._last = 0
        self._waited = 0
        self._trim = trim if trim is not None else _load_malloc_trim()
        self._collect = collect

    def observe(self, connections: int) -> bool:
        """Note the current count; reclaim (and return True) after a large, settled drop."""
        falling = connections < self._last
        self._last = connections
        if connections >= self.peak:
            self.peak = connections
            self._waited = 0
            return False
        if self.peak - connections < self.min_drop or connections > self.peak // 2:
            return False
        if falling and self._waited < self.max_wait:
            self._waited += 1
            return False
        self._reclaim(connections)
        return True

    def _reclaim(self, connections: int) -> None:
        before, started = rss_mib(), time.perf_counter()
        self._collect()
        self._trim()
        after, took = rss_mib(), time.perf_counter() - started
        log.info(
            "connections fell from %d to %d: memory reclaimed in %.0f ms%s",
            self.peak,
            connections,
            took * 1000,
            f" (RSS {before:.1f} → {after:.1f} MiB)" if before and after else "",
        )
        self.peak = connections
        self._waited = 0
        self.reclaims += 1
