"""The replay guard: each signed HTTP API request is served once (docs/security.md).

Pusher's request signature has no nonce: a captured request stays valid while its
``auth_timestamp`` is within the 600 s window. With ``replay_guard`` on, the node remembers each
``auth_signature`` it served until that window closes, refuses a second use, and tells the other
nodes (a ``seen`` control message, :meth:`~ressonance.node.cluster.ClusterView.seen`).

Memory is bounded: at most ``capacity`` signatures. When full, a new one that expires later
than some kept one takes the place of the one that expires first, and the guard's *horizon*
moves up to that one's expiry: from then on a request whose window ends at or before the horizon
is refused as too old to be checked. A new one that expires no later than every kept one is
refused the same way (it cannot be kept). Fresh requests, which is what the SDKs send, pass; the
accepted window shrinks instead of replays getting through.

Pure bookkeeping: no I/O, no clock; times are Unix seconds passed in by the caller.
"""

from __future__ import annotations

import heapq
from enum import Enum

WINDOW = 600  # seconds an auth_timestamp stays valid either side of the server clock


class Claim(Enum):
    """What :meth:`ReplayGuard.claim` decided."""

    FIRST = "first"  # never seen: served, and remembered
    REPLAYED = "replayed"  # seen before within its window
    TOO_OLD = "too old"  # older than the horizon of a full guard: cannot be checked


class ReplayGuard:
    """Signatures seen, each until its window closes; at most ``capacity`` of them."""

    __slots__ = ("_expiry", "_seen", "capacity", "horizon")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.horizon = 0.0  # requests whose window ends at or before this are refused
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[float, bytes]] = []  # a heap: the first to expire on top

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, signature: str, timestamp: int, now: float) -> Claim:
        """Check a request's verified ``auth_signature`` (hex) signed at ``timestamp``."""
        self.expire(now)
        key = bytes.fromhex(signature)
        if key in self._seen:
            return Claim.REPLAYED
        if not self.remember(key, timestamp + WINDOW):
            return Claim.TOO_OLD
        return Claim.FIRST

    def remember(self, key: bytes, expires: float) -> bool:
        """Keep ``key`` until ``expires``; False when it is older than a full guard keeps."""
        if expires <= self.horizon:
            return False
        if key in self._seen:
            return True
        if len(self._seen) < self.capacity:
            heapq.heappush(self._expiry, (expires, key))
        elif expires <= self._expiry[0][0]:
            return False  # full, and it expires no later than any kept: not kept, not served
        else:
            dropped_at, dropped = heapq.heapreplace(self._expiry, (expires, key))
            self._seen.discard(dropped)
            self.horizon = max(self.horizon, dropped_at)
        self._seen.add(key)
        return True

    def expire(self, now: float) -> None:
        """Forget the signatures whose window has closed (a request with them is refused by
        the timestamp check anyway)."""
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            self._seen.discard(heapq.heappop(expiry)[1])
