"""Frozen data that every layer shares."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class App:
    """One tenant: its credentials, limits and feature flags (docs/configuration.md)."""

    id: str
    key: str
    secret: str
    enabled: bool = True
    client_events: bool = True
    max_payload_kb: int = 10
    max_connections: int = 0
    max_client_events_per_second: int = 10
    max_subscriptions_per_second: int = 128
    max_channels_per_connection: int = 128
    max_presence_members: int = 100
    max_presence_member_kb: int = 1
    subscription_count: bool = False
    cache_ttl: int = 1800
    allowed_origins: tuple[str, ...] = ()

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_kb * 1024

    def origin_allowed(self, origin: str | None) -> bool:
        """True when no origins are configured, or ``origin`` matches one (``*`` allows any)."""
        if not self.allowed_origins or "*" in self.allowed_origins:
            return True
        return origin is not None and origin.rstrip("/").lower() in self.allowed_origins
