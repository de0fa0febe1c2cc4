"""Frozen data that every layer shares."""

from __future__ import annotations

from dataclasses import dataclass

# what a webhook may be sent for (docs/webhooks.md; Pusher's and Soketi's names)
WEBHOOK_EVENTS = (
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
)


# the headers Ressonance sets on every webhook POST: a webhook's own headers may not use them
WEBHOOK_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "x-pusher-key",
        "x-pusher-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "host",
        "content-length",
        "connection",
        "transfer-encoding",
        "user-agent",
    }
)


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook of an app, in Soketi's shape: where to POST, which events, which channels
    (``filter``), and extra headers (docs/webhooks.md)."""

    url: str
    event_types: tuple[str, ...]
    channel_name_starts_with: str = ""
    channel_name_ends_with: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def wants(self, event: str, channel: str) -> bool:
        return (
            event in self.event_types
            and channel.startswith(self.channel_name_starts_with)
            and channel.endswith(self.channel_name_ends_with)
        )

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"url": self.url, "event_types": list(self.event_types)}
        filters = {
            name: value
            for name, value in (
                ("channel_name_starts_with", self.channel_name_starts_with),
                ("channel_name_ends_with", self.channel_name_ends_with),
            )
            if value
        }
        if filters:
            body["filter"] = filters
        if self.headers:
            body["headers"] = dict(self.headers)
        return body


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event of Pusher's webhook contract (docs/webhooks.md): ``name`` is one of
    :data:`WEBHOOK_EVENTS`; the other fields are those its name carries."""

    name: str
    channel: str
    user_id: str | None = None  # member_added, member_removed, client_event (signed-in user)
    event: str | None = None  # client_event: the event's name
    data: str | None = None  # client_event: the event's data, as the client sent it
    socket_id: str | None = None  # client_event: the sender
    subscription_count: int | None = None  # subscription_count

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"name": self.name, "channel": self.channel}
        for key in ("user_id", "event", "data", "socket_id", "subscription_count"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body


@dataclass(frozen=True, slots=True)
class App:
    """One tenant: its credentials, limits and feature flags (docs/configuration.md).

    ``key``/``secret`` is the newest pair; ``previous`` holds the older pairs that stay valid
    during a secret rotation (docs/apps.md, "Rotating a secret"), newest first. Every active
    key finds the app, and each key signs with its own secret.
    """

    id: str
    key: str
    secret: str
    enabled: bool = True
    name: str = ""
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
    webhooks: tuple[Webhook, ...] = ()
    webhook_batching: bool = False  # several events in one POST (docs/webhooks.md)
    previous: tuple[tuple[str, str], ...] = ()  # (key, secret) pairs in their grace period

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_kb * 1024

    @property
    def keys(self) -> tuple[str, ...]:
        """Every active key, the newest first."""
        return (self.key, *(key for key, _ in self.previous))

    @property
    def oldest(self) -> tuple[str, str]:
        """The oldest active (key, secret) pair: what signs webhooks during a rotation."""
        return self.previous[-1] if self.previous else (self.key, self.secret)

    def secret_for(self, key: str | None) -> str | None:
        """The secret of the active ``key``, or None when it is not one of this app's."""
        if key == self.key:
            return self.secret
        for old, secret in self.previous:
            if old == key:
                return secret
        return None

    def origin_allowed(self, origin: str | None) -> bool:
        """True when no origins are configured, or ``origin`` matches one (``*`` allows any)."""
        if not self.allowed_origins or "*" in self.allowed_origins:
            return True
        return origin is not None and origin.rstrip("/").lower() in self.allowed_origins
