"""This node's sockets, channel memberships and user → sockets index.

State only: the rules that change it live in :mod:`ressonance.node.node` and ``protocol/``; what
is shared with the other nodes (presence rosters, cached events) lives in
:mod:`ressonance.node.cluster`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ressonance.models import App, Webhook
from ressonance.protocol.session import Session


class Socket(Protocol):
    """What the node needs of a connection; the transport implements it."""

    session: Session

    def send(self, frame: bytes) -> None:
        """Queue one encoded WebSocket frame; it goes out with this loop tick's other frames."""

    def close(self, code: int, reason: str) -> None:
        """Close with a WebSocket close frame of ``code`` and stop reading."""


class AppState:
    """Everything this node holds for one app."""

    __slots__ = (
        "app",
        "bytes_sent",
        "channels",
        "errors",
        "opened",
        "received_api",
        "received_client",
        "sent",
        "sockets",
        "subscriptions",
        "users",
        "watchers",
        "watching",
        "webhook_filter",
        "webhook_log",
    )

    def __init__(self, app: App) -> None:
        self.app = app
        self.sockets: dict[str, Socket] = {}
        self.channels: dict[str, dict[str, Socket]] = {}
        self.users: dict[str, set[Socket]] = {}
        self.watchers: dict[str, set[Socket]] = {}  # watched user id -> sockets watching it
        self.watching: dict[str, tuple[str, ...]] = {}  # socket id -> its watchlist
        # Counters since start, read by metrics at scrape time (plain ints: counted once per
        # publish or change, never per socket write; docs/observability.md)
        self.subscriptions = 0  # socket-channel pairs now
        self.opened = 0  # connections opened
        self.received_api = 0  # events published through the HTTP API, one per channel
        self.received_client = 0  # client events
        self.sent = 0  # frames delivered to subscribers (a fan-out to N counts N)
        self.bytes_sent = 0  # ... and their bytes
        self.errors: dict[int, int] = {}  # pusher:error code -> sent
        # where this app's client events are recorded for its webhooks (the webhook sink's
        # list for the app: socket id, frame, ...), None when no webhook wants them; and the
        # webhooks' channel filters when every one of them has one (None: every channel)
        self.webhook_log: list[str] | None = None
        self.webhook_filter: tuple[Webhook, ...] | None = None

    def watch(self, socket: Socket, user_ids: tuple[str, ...]) -> None:
        """Index ``socket`` as a watcher of each of ``user_ids`` (both ways, so that
        :meth:`unwatch` costs the socket's own watchlist, not the app's)."""
        if not user_ids:
            return
        self.watching[socket.session.socket_id] = user_ids
        for user_id in user_ids:
            watchers = self.watchers.get(user_id)
            if watchers is None:
                watchers = self.watchers[user_id] = set()
            watchers.add(socket)

    def unwatch(self, socket: Socket) -> None:
        """Forget ``socket``'s watchlist (the entry of an id goes with its last watcher)."""
        for user_id in self.watching.pop(socket.session.socket_id, ()):
            watchers = self.watchers.get(user_id)
            if watchers is not None:
                watchers.discard(socket)
                if not watchers:
                    del self.watchers[user_id]

    def join(self, channel: str, socket: Socket) -> int:
        """Add ``socket`` to ``channel``; return the channel's subscription count."""
        subscribers = self.channels.get(channel)
        if subscribers is None:
            subscribers = self.channels[channel] = {}
        subscribers[socket.session.socket_id] = socket
        self.subscriptions += 1
        return len(subscribers)

    def leave(self, channel: str, socket: Socket) -> int:
        """Remove ``socket`` from ``channel``; return what is left (the entry goes at 0)."""
        subscribers = self.channels.get(channel)
        if subscribers is None:
            return 0
        if subscribers.pop(socket.session.socket_id, None) is not None:
            self.subscriptions -= 1
        if not subscribers:
            del self.channels[channel]
            return 0
        return len(subscribers)


class Hub:
    """Per-app state of this node, by app id."""

    __slots__ = ("_apps", "follow")

    def __init__(self, follow: Callable[[AppState], None] | None = None) -> None:
        self._apps: dict[str, AppState] = {}
        # called when a state is made or takes a new App (the node sets its webhook log)
        self.follow = follow

    def state(self, app: App) -> AppState:
        """The state of ``app``, created on first use; the app's settings are refreshed."""
        state = self._apps.get(app.id)
        if state is None:
            state = self._apps[app.id] = AppState(app)
        elif state.app is not app:
            state.app = app
        else:
            return state
        if self.follow is not None:
            self.follow(state)
        return state

    def get(self, app_id: str) -> AppState | None:
        return self._apps.get(app_id)

    def all(self) -> list[AppState]:
        return list(self._apps.values())

    def connection_count(self) -> int:
        return sum(len(s.sockets) for s in self._apps.values())

    def connections(self) -> dict[str, int]:
        """App id → open connections here (for the other nodes' connection quotas)."""
        return {app_id: len(s.sockets) for app_id, s in self._apps.items() if s.sockets}

    def counts(self) -> dict[tuple[str, str], int]:
        """(app id, channel) → subscriptions here, for every occupied channel."""
        return {
            (app_id, channel): len(subscribers)
            for app_id, state in self._apps.items()
            for channel, subscribers in state.channels.items()
        }
