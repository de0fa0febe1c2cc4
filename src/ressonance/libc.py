"""The C library, for the two calls Python has no wrapper for (``malloc_trim``, ``prctl``).

Loaded by its soname, once: ``ctypes.util.find_library`` would run ``ldconfig`` in a
subprocess. None where there is no glibc (musl, macOS): callers then do without.
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
