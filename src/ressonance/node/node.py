"""Applies what sessions ask for, using the hub (local state) and the broker (fan-out).

The transport calls :meth:`Node.admit` and :meth:`Node.connect` when a WebSocket opens,
:meth:`Node.receive` per text message and :meth:`Node.disconnect` when it closes. The HTTP API
calls :meth:`Node.publish` and the query functions at the end of this module.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from ressonance.errors import PusherError
from ressonance.models import App
from ressonance.node.hub import AppState, CachedEvent, Hub, Socket
from ressonance.protocol import channels, codes, messages
from ressonance.protocol.framing import text_frame
from ressonance.protocol.session import (
    ClientEvent,
    Fail,
    Reply,
    Session,
    SignIn,
    Subscribe,
    Unsubscribe,
)
from ressonance.scaling.base import Broker

log = logging.getLogger("ressonance.node")

LARGE_CHANNEL = 100  # above this, subscription_count events are sent every few seconds


def new_socket_id() -> str:
    """``\\d+.\\d+`` as the server SDKs require (PROTOCOL.md A §1.8)."""
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}"


def check_protocol(protocol: str | None) -> None:
    """Part B item 2: a given ``protocol`` must be 7 (4007); a missing one is accepted."""
    if protocol is None or protocol == "7":
        return
    if not protocol.isdigit():
        raise PusherError(codes.INVALID_VERSION, "Invalid protocol version")
    raise PusherError(codes.UNSUPPORTED_PROTOCOL, f"Unsupported protocol version {protocol}")


class Node:
    """One node's orchestration: sessions' actions applied to the hub and the broker."""

    def __init__(
        self,
        broker: Broker,
        activity_timeout: int = 120,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = Hub()
        self.broker = broker
        self.activity_timeout = activity_timeout
        self.clock = clock
        self._pending_counts: set[tuple[str, str]] = set()

    async def start(self) -> None:
        await self.broker.start(self)

    # connection lifecycle ------------------------------------------------------------------
    def admit(self, app: App | None, protocol: str | None, origin: str | None) -> App:
        """Check a new connection (Part B item 2); raises :class:`PusherError` to close with."""
        check_protocol(protocol)
        if app is None:
            raise PusherError(codes.APP_NOT_FOUND, "App key does not exist")
        if not app.enabled:
            raise PusherError(codes.APP_DISABLED, "App is disabled")
        if not app.origin_allowed(origin):
            raise PusherError(codes.UNAUTHORIZED, "Origin not allowed")
        state = self.hub.get(app.id)
        if app.max_connections and state and len(state.sockets) >= app.max_connections:
            raise PusherError(codes.OVER_CONNECTION_QUOTA, "App is over its connection quota")
        return app

    def connect(self, socket: Socket, app: App) -> Session:
        """Register an admitted socket and send ``pusher:connection_established``."""
        session = Session(app, new_socket_id())
        socket.session = session
        self.hub.state(app).sockets[session.socket_id] = socket
        socket.send(
            text_frame(messages.connection_established(session.socket_id, self.activity_timeout))
        )
        return session

    def disconnect(self, socket: Socket) -> None:
        """Forget ``socket``: leave every channel (presence members removed), sign out."""
        session = socket.session
        state = self.hub.get(session.app.id)
        if state is None or state.sockets.pop(session.socket_id, None) is None:
            return
        for channel in list(session.channels):
            self._unsubscribe(state, socket, channel)
        if session.user_id is not None:
            self._sign_out(state, socket, session.user_id)

    def receive(self, socket: Socket, text: str) -> None:
        """Apply one client frame (PROTOCOL.md A §1.3)."""
        action = socket.session.receive(text, self.clock())
        if action is None:
            return
        state = self.hub.state(socket.session.app)
        if isinstance(action, ClientEvent):
            frame = messages.encode_client_event(
                action.event, action.channel, action.data, action.user_id
            )
            self.broker.publish(state.app.id, action.channel, frame, socket.session.socket_id)
        elif isinstance(action, Reply):
            socket.send(text_frame(action.frame))
        elif isinstance(action, Subscribe):
            self._subscribe(state, socket, action)
        elif isinstance(action, Unsubscribe):
            self._unsubscribe(state, socket, action.channel)
        elif isinstance(action, SignIn):
            self._sign_in(state, socket, action)
        elif isinstance(action, Fail):
            self.fail(socket, action.code, action.message)

    def fail(self, socket: Socket, code: int, message: str) -> None:
        """``pusher:error``, then a close with the same code when it is fatal (Part B item 1)."""
        socket.send(text_frame(messages.error(code, message)))
        if codes.is_fatal(code):
            socket.close(code, message)

    # subscriptions -------------------------------------------------------------------------
    def _subscribe(self, state: AppState, socket: Socket, action: Subscribe) -> None:
        session = socket.session
        channel, member = action.channel, action.member
        if channel in session.channels:  # subscribing twice: answer again, change nothing
            socket.send(text_frame(self._succeeded(state, channel)))
            return
        first = False
        if member is not None:
            roster = state.roster(channel)
            limit = state.app.max_presence_members
            if member.user_id not in roster and limit and len(roster) >= limit:
                if not roster:
                    state.rosters.pop(channel, None)
                socket.send(
                    text_frame(
                        messages.subscription_error(
                            channel, "LimitReached", "Presence channel is full", 4100
                        )
                    )
                )
                return
            first = roster.add(member)
        session.channels[channel] = member.user_id if member else None
        count = state.join(channel, socket)
        socket.send(text_frame(self._succeeded(state, channel)))
        if member is not None and first:
            added = messages.encode_event(
                "pusher_internal:member_added",
                channel,
                {"user_id": member.user_id, "user_info": member.user_info},
            )
            self.deliver(state.app.id, channel, added, session.socket_id)
        if action.kind.cache:
            self._send_cached(state, socket, channel)
        self._count_changed(state, channel, count)

    def _succeeded(self, state: AppState, channel: str) -> str:
        data: dict[str, object] = {}
        if channels.kind_of(channel).presence:
            data = {"presence": state.roster(channel).snapshot()}
        return messages.encode_event("pusher_internal:subscription_succeeded", channel, data)

    def _send_cached(self, state: AppState, socket: Socket, channel: str) -> None:
        cached = state.cached(channel, self.clock())
        if cached is None:
            socket.send(text_frame(messages.cache_miss(channel)))
        else:
            socket.send(text_frame(messages.encode_event(cached.event, channel, cached.data)))

    def _unsubscribe(self, state: AppState, socket: Socket, channel: str) -> None:
        session = socket.session
        if channel not in session.channels:
            return
        user_id = session.channels.pop(channel)
        last = False
        if user_id is not None and channel in state.rosters:
            last = state.rosters[channel].remove(user_id)
        count = state.leave(channel, socket)
        if last and count:
            removed = messages.encode_event(
                "pusher_internal:member_removed", channel, {"user_id": user_id}
            )
            self.deliver(state.app.id, channel, removed, None)
        self._count_changed(state, channel, count)

    def _count_changed(self, state: AppState, channel: str, count: int) -> None:
        """``pusher_internal:subscription_count`` for non-presence channels, when the app
        enables it; channels over 100 subscribers get it from :meth:`flush_counts`."""
        if not state.app.subscription_count or count == 0:
            return
        kind = channels.kind_of(channel)
        if kind.presence or kind.user:
            return
        if count > LARGE_CHANNEL:
            self._pending_counts.add((state.app.id, channel))
            return
        self._send_count(state, channel, count)

    def _send_count(self, state: AppState, channel: str, count: int) -> None:
        frame = messages.encode_event(
            "pusher_internal:subscription_count", channel, {"subscription_count": count}
        )
        self.deliver(state.app.id, channel, frame, None)

    def flush_counts(self) -> None:
        """Send the pending counts of large channels (call every few seconds)."""
        pending, self._pending_counts = self._pending_counts, set()
        for app_id, channel in pending:
            state = self.hub.get(app_id)
            if state is not None and channel in state.channels:
                self._send_count(state, channel, len(state.channels[channel]))

    # users -----------------------------------------------------------------------------
    def _sign_in(self, state: AppState, socket: Socket, action: SignIn) -> None:
        session = socket.session
        socket.send(
            text_frame(
                messages.encode_event(
                    "pusher:signin_success", None, {"user_data": action.user_data}
                )
            )
        )
        if action.watchlist_truncated:
            socket.send(
                text_frame(messages.error(codes.WATCHLIST_LIMIT, "Watchlist limit exceeded"))
            )
        if session.user_id is None:
            session.user_id = action.user_id
            sockets = state.users.setdefault(action.user_id, set())
            sockets.add(socket)
            if len(sockets) == 1:
                self._notify_watchers(state, action.user_id, "online")
            for watched in action.watchlist:
                state.watchers.setdefault(watched, set()).add(socket)
            online = [w for w in action.watchlist if w in state.users]
            if online:
                socket.send(text_frame(_watchlist_frame("online", online)))

    def _sign_out(self, state: AppState, socket: Socket, user_id: str) -> None:
        sockets = state.users.get(user_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del state.users[user_id]
                self._notify_watchers(state, user_id, "offline")
        for watched in [w for w, s in state.watchers.items() if socket in s]:
            watchers = state.watchers[watched]
            watchers.discard(socket)
            if not watchers:
                del state.watchers[watched]

    def _notify_watchers(self, state: AppState, user_id: str, name: str) -> None:
        watchers = state.watchers.get(user_id)
        if watchers:
            frame = text_frame(_watchlist_frame(name, [user_id]))
            for watcher in watchers:
                watcher.send(frame)

    def terminate_user(self, app: App, user_id: str) -> int:
        """Close every signed-in socket of ``user_id`` (HTTP ``terminate_connections``)."""
        state = self.hub.get(app.id)
        sockets = list(state.users.get(user_id, ())) if state else []
        for socket in sockets:
            self.fail(socket, codes.UNAUTHORIZED, "Connection terminated by the app")
        return len(sockets)

    # publishing ----------------------------------------------------------------------------
    def publish(
        self, app: App, channel: str, event: str, data: str, exclude: str | None = None
    ) -> None:
        """Publish an HTTP API event on ``channel`` cluster-wide; cache channels keep it."""
        if channels.kind_of(channel).cache:
            self.hub.state(app).cache[channel] = CachedEvent(
                event, data, self.clock() + app.cache_ttl
            )
        self.broker.publish(app.id, channel, messages.encode_event(event, channel, data), exclude)

    def deliver(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        """Write ``message`` to this node's subscribers of ``channel``: encoded once, the same
        bytes queued on every socket (docs/design.md "Hot-path rules")."""
        state = self.hub.get(app_id)
        subscribers = state.channels.get(channel) if state is not None else None
        if not subscribers:
            return
        frame = text_frame(message)
        if exclude is None:
            for socket in subscribers.values():
                socket.send(frame)
            return
        for socket_id, socket in subscribers.items():
            if socket_id != exclude:
                socket.send(frame)

    def sweep(self) -> None:
        """Periodic housekeeping: expired cache entries, pending subscription counts."""
        now = self.clock()
        for state in self.hub.all():
            state.expire_cache(now)
        self.flush_counts()


def _watchlist_frame(name: str, user_ids: list[str]) -> str:
    return messages.encode_event(
        "pusher_internal:watchlist_events", None, {"events": [{"name": name, "user_ids": user_ids}]}
    )


class ChannelStats:
    """What the HTTP API reports of one channel (PROTOCOL.md A §1.9)."""

    __slots__ = ("subscription_count", "user_count")

    def __init__(self, subscription_count: int, user_count: int | None) -> None:
        self.subscription_count = subscription_count
        self.user_count = user_count


async def channel_stats(node: Node, app: App, prefix: str = "") -> dict[str, ChannelStats]:
    """Occupied channels of ``app`` whose names start with ``prefix``."""
    state = node.hub.get(app.id)
    if state is None:
        return {}
    return {
        name: ChannelStats(len(subs), len(state.rosters[name]) if name in state.rosters else None)
        for name, subs in state.channels.items()
        if name.startswith(prefix)
    }


async def one_channel(node: Node, app: App, channel: str) -> ChannelStats:
    state = node.hub.get(app.id)
    subs = state.channels.get(channel) if state else None
    if state is None or not subs:
        return ChannelStats(0, 0 if channels.kind_of(channel).presence else None)
    roster = state.rosters.get(channel)
    return ChannelStats(len(subs), len(roster) if roster is not None else None)


async def channel_users(node: Node, app: App, channel: str) -> dict[str, Any]:
    """user id → user_info of the members of a presence channel."""
    state = node.hub.get(app.id)
    roster = state.rosters.get(channel) if state else None
    return roster.members() if roster is not None else {}


def cached_event(node: Node, app: App, channel: str) -> CachedEvent | None:
    state = node.hub.get(app.id)
    return state.cached(channel, node.clock()) if state else None
