"""The last event of every cache channel of the cluster (docs/protocol.md, "Cache channels"),
kept on every node: the publishing node sends it with its time to live (a ``cache`` control
message), and a node's ``state`` hands what it holds to a new node
(:mod:`ressonance.node.cluster`)."""

from __future__ import annotations

from dataclasses import dataclass

from ressonance.node.control import CacheEntry, Key


@dataclass(slots=True)
class CachedEvent:
    """The last event published on a cache channel (docs/protocol.md, "Cache channels")."""

    event: str
    data: str
    expires_at: float


class CacheStore:
    """(app id, channel) → its last event, until the event expires."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[Key, CachedEvent] = {}

    def get(self, key: Key, now: float) -> CachedEvent | None:
        entry = self.entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self.entries[key]
            return None
        return entry

    def put(self, key: Key, event: CachedEvent) -> None:
        self.entries[key] = event

    def expire(self, now: float) -> None:
        for key in [k for k, e in self.entries.items() if e.expires_at <= now]:
            del self.entries[key]

    def live(self, now: float) -> dict[Key, CacheEntry]:
        """The unexpired events with their remaining time to live, for a ``state``."""
        return {
            key: CacheEntry(e.event, e.data, max(0.0, e.expires_at - now))
            for key, e in self.entries.items()
            if e.expires_at > now
        }

    def merge(self, entries: dict[Key, CacheEntry], now: float) -> None:
        """Another node's events (from its ``state``): each kept unless ours lives longer."""
        for key, (event, data, ttl) in entries.items():
            mine = self.entries.get(key)
            if mine is None or mine.expires_at < now + ttl:
                self.entries[key] = CachedEvent(event, data, now + ttl)

    def __len__(self) -> int:
        return len(self.entries)
