"""Applies what sessions ask for, using the hub (this node's sockets), the cluster view (what is
shared with the other nodes) and the cluster link (the broker, through which they hear it).

The node keeps the lifecycle of connections, subscriptions and presence, publishing and
delivery; its other concerns are collaborators made here: :class:`SubscriptionCounts`
(``node/counts.py``), :class:`Users` (``node/users.py``) and :class:`ClusterLink`
(``node/peers.py``). What happens is emitted on :attr:`Node.events` (``node/events.py``).

The transport (through ``node/gateway.py``) calls :meth:`Node.admit` and :meth:`Node.connect`
when a WebSocket opens, :meth:`Node.receive` per text message and :meth:`Node.disconnect` when it
closes. The HTTP API calls :meth:`Node.publish`, :meth:`Node.terminate_user` and
:mod:`ressonance.node.queries`. The broker calls :meth:`Node.deliver`, :meth:`Node.control` and
:meth:`Node.link_changed`; the server calls :meth:`Node.heartbeat` every second and
:meth:`Node.housekeeping` every few.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ressonance.errors import PusherError
from ressonance.models import App
from ressonance.node import events
from ressonance.node.cluster import (
    AppsChanged,
    CachedEvent,
    ClusterView,
    CountChanged,
    DebugEntry,
    DebugWatch,
    Effect,
    MemberAdded,
    MemberRemoved,
    Seen,
    SendState,
    Terminate,
)
from ressonance.node.coalesce import PresenceChanges
from ressonance.node.counts import SubscriptionCounts
from ressonance.node.debug import DebugFeed
from ressonance.node.hub import AppState, Hub, Socket
from ressonance.node.peers import ClusterLink
from ressonance.node.replay import WINDOW, Claim, ReplayGuard
from ressonance.node.schedule import soon
from ressonance.node.stats import LatencyHistogram
from ressonance.node.users import Users
from ressonance.node.webhooks import Sink, WebhookSource, wanted
from ressonance.protocol import channels, codes, messages
from ressonance.protocol.connection import check_protocol, new_socket_id
from ressonance.protocol.framing import text_frame
from ressonance.protocol.presence import Member
from ressonance.protocol.session import (
    ClientEvent,
    Fail,
    Refuse,
    Reply,
    Session,
    SignIn,
    Subscribe,
    Unsubscribe,
)
from ressonance.scaling.base import Broker

EMPTY_PRESENCE = {"ids": [], "hash": {}, "count": 0}


class Node:
    """One node's orchestration: sessions' actions applied to the hub and the broker."""

    def __init__(
        self,
        broker: Broker,
        activity_timeout: int = 120,
        clock: Callable[[], float] = time.monotonic,
        region: str = "",
        node_timeout: float = 10.0,
        replay: ReplayGuard | None = None,
    ) -> None:
        self.hub = Hub(self._follow_webhooks)
        self.events = events.EventPort()
        self.replay = replay  # None: replay_guard is off
        self._seen: list[tuple[str, float]] = []  # served signatures to tell the others
        self.broker = broker
        self.activity_timeout = activity_timeout
        self.clock = clock
        self.view = ClusterView(broker.node_id, region, clock())
        self.link = ClusterLink(self.view, broker, self.hub, clock, node_timeout, self._apply)
        self._send = self.link.send
        self.counts = SubscriptionCounts(
            self.hub, self.view, self._send, self._deliver, self._end_tick_soon
        )
        self.users = Users(self.hub, self.view, self._send, self.fail)
        self.debug = DebugFeed(broker.node_id, self.events, self.view, self._send, clock)
        # webhook events, cluster-wide (sent when the server gives it a sink)
        self.webhooks = WebhookSource(self.view, self.counts.total, clock, node_timeout)
        self._presence = PresenceChanges()  # member events to send at the tick's end
        self._tick_pending = False
        # publish accepted here -> its frame written to this node's subscribers: once per loop
        # tick, for the tick's first publish (the longest wait of the tick; docs/observability.md)
        self.publish_latency = LatencyHistogram()
        self._tick_publish = 0.0  # when this tick's first delivered publish was accepted
        # another node changed this app in the app store (the server reads the store then)
        self.on_apps_changed: Callable[[str], None] = lambda app_id: None

    async def start(self) -> None:
        await self.broker.start(self)
        self.link.started()

    async def stop(self) -> None:
        """Say goodbye to the other nodes (after the sockets were closed), then disconnect."""
        self.webhooks.close()
        self.counts.send_changed()
        self.view.bye()
        self._send()
        await self.broker.close()

    # connection lifecycle ------------------------------------------------------------------
    def admit(self, app: App | None, protocol: str | None, origin: str | None) -> App:
        """Check a new connection (docs/protocol.md, "Connecting"); raises
        :class:`PusherError` to close with."""
        check_protocol(protocol)
        if app is None:
            raise PusherError(codes.APP_NOT_FOUND, "App key does not exist")
        if not app.enabled:
            raise PusherError(codes.APP_DISABLED, "App is disabled")
        if not app.origin_allowed(origin):
            raise PusherError(codes.UNAUTHORIZED, "Origin not allowed")
        if app.max_connections:
            state = self.hub.get(app.id)
            here = len(state.sockets) if state else 0
            if here + self.view.remote_connections(app.id) >= app.max_connections:
                raise PusherError(codes.OVER_CONNECTION_QUOTA, "App is over its connection quota")
        return app

    def app_changed(self, app_id: str, app: App | None) -> None:
        """The app store changed ``app_id`` (None: deleted). A disabled or deleted app's
        connections here close with 4003; otherwise the hub and the open sessions take the new
        settings (limits, flags, keys, webhooks) at once."""
        self.webhooks.set_app(app_id, app)
        state = self.hub.get(app_id)
        if state is None:
            return
        if app is None or not app.enabled:
            reason = "App was deleted" if app is None else "App is disabled"
            for socket in list(state.sockets.values()):
                self.fail(socket, codes.APP_DISABLED, reason)
            if app is not None:
                state.app = app
                self._follow_webhooks(state)
            return
        state.app = app
        self._follow_webhooks(state)
        for socket in state.sockets.values():
            socket.session.app = app

    def set_webhook_sink(self, sink: Sink | None) -> None:
        """Where this node's webhook events go (None: webhooks off on this node)."""
        self.webhooks.sink = sink
        for state in self.hub.all():
            self._follow_webhooks(state)

    def _follow_webhooks(self, state: AppState) -> None:
        """``state`` records its client events where its app's webhooks want them."""
        state.webhook_log, state.webhook_filter = self.webhooks.client_log(state.app.id)

    def webhook_attempt(
        self,
        app_id: str,
        url: str,
        names: tuple[str, ...],
        outcome: str,
        reason: str,
        attempts: int,
    ) -> None:
        """A webhook was posted (or tried) by this node: the debug console shows it."""
        if self.events.listeners:
            self.events.emit(events.WebhookAttempt(app_id, url, names, outcome, reason, attempts))

    def announce_app(self, app_id: str) -> None:
        """This node changed ``app_id`` in the app store: the other nodes read it now."""
        self.view.apps_changed(app_id)
        self._send()

    def connect(self, socket: Socket, app: App) -> Session:
        """Register an admitted socket and send ``pusher:connection_established``."""
        session = Session(app, new_socket_id())
        socket.session = session
        state = self.hub.state(app)
        state.sockets[session.socket_id] = socket
        state.opened += 1
        socket.send(
            text_frame(messages.connection_established(session.socket_id, self.activity_timeout))
        )
        if self.events.listeners:
            self.events.emit(events.ConnectionOpened(app.id, session.socket_id))
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
            self.users.sign_out(state, socket, session.user_id)
        if self.events.listeners:
            self.events.emit(events.ConnectionClosed(state.app.id, session.socket_id))

    def receive(self, socket: Socket, text: str) -> None:
        """Apply one client frame (docs/protocol.md, "Client frames")."""
        session = socket.session
        action = session.receive(text, self.clock())
        if action is None:
            return
        state = self.hub.state(session.app)
        if isinstance(action, ClientEvent):
            state.received_client += 1
            frame = messages.encode_client_event(
                action.event, action.channel, action.data, action.user_id
            )
            if self.events.listeners:
                self.events.emit(
                    events.ClientEvent(
                        state.app.id,
                        action.channel,
                        action.event,
                        session.socket_id,
                        len(frame),
                        action.data,
                    )
                )
            self._fan_out(state.app.id, action.channel, frame, session.socket_id)
            log = state.webhook_log  # the app wants client_event webhooks: one extend
            if log is not None and (
                state.webhook_filter is None or wanted(state.webhook_filter, action.channel)
            ):
                log += (session.socket_id, frame)
        elif isinstance(action, Reply):
            socket.send(text_frame(action.frame))
        elif isinstance(action, Subscribe):
            self._subscribe(state, socket, action)
        elif isinstance(action, Unsubscribe):
            self._unsubscribe(state, socket, action.channel)
        elif isinstance(action, SignIn):
            self.users.sign_in(state, socket, action)
        elif isinstance(action, Fail):
            self.fail(socket, action.code, action.message)
        elif isinstance(action, Refuse):
            self.fail(socket, action.code, action.message)
            socket.send(text_frame(action.frame))

    def fail(self, socket: Socket, code: int, message: str) -> None:
        """``pusher:error``, then a close with the same code when it is fatal
        (docs/protocol.md, "Error codes")."""
        socket.send(text_frame(messages.error(code, message)))
        state = self.hub.get(socket.session.app.id)
        if state is not None:
            state.errors[code] = state.errors.get(code, 0) + 1
        if self.events.listeners:
            session = socket.session
            self.events.emit(events.ErrorSent(session.app.id, session.socket_id, code, message))
        if codes.is_fatal(code):
            socket.close(code, message)

    # subscriptions -------------------------------------------------------------------------
    def _subscribe(self, state: AppState, socket: Socket, action: Subscribe) -> None:
        session = socket.session
        app_id = state.app.id
        channel, member = action.channel, action.member
        if action.kind.presence:  # this tick's member events go to those subscribed before
            self._flush_presence(app_id, channel, self._returning(state, channel, member))
        if channel in session.channels:  # subscribing twice: answer again, change nothing
            socket.send(text_frame(self._succeeded(state, channel)))
            return
        first = False
        if member is not None:
            roster = self.view.roster(app_id, channel)
            limit = state.app.max_presence_members
            if roster and member.user_id not in roster and limit and len(roster) >= limit:
                socket.send(
                    text_frame(messages.limit_reached(channel, "Presence channel is full", 4100))
                )
                return
            first = self.view.join(app_id, channel, session.socket_id, member)
            self._send()
        session.channels[channel] = member.user_id if member else None
        state.join(channel, socket)
        socket.send(text_frame(self._succeeded(state, channel)))
        if member is not None and first:
            self._presence.added((app_id, channel), member, session.socket_id)
            self._end_tick_soon()
        if action.kind.cache:
            self._send_cached(state, socket, channel)
        self.counts.local_changed(app_id, channel)
        if state.app.webhooks:
            self.webhooks.channel(app_id, channel)
            if member is not None:
                self.webhooks.member(app_id, channel, member.user_id)
        if self.events.listeners:
            self._emit_subscribed(app_id, channel, session.socket_id, member if first else None)

    def _emit_subscribed(
        self, app_id: str, channel: str, socket_id: str, first: Member | None
    ) -> None:
        emit = self.events.emit
        emit(events.Subscribed(app_id, channel, socket_id))
        if self.counts.total(app_id, channel) == 1:
            emit(events.ChannelOccupied(app_id, channel))
        if first is not None:
            emit(events.MemberAdded(app_id, channel, first.user_id))

    def _succeeded(self, state: AppState, channel: str) -> str:
        presence: dict[str, object] | None = None
        if channels.kind_of(channel).presence:
            roster = self.view.roster(state.app.id, channel)
            presence = roster.snapshot() if roster else EMPTY_PRESENCE
        return messages.subscription_succeeded(channel, presence)

    def _send_cached(self, state: AppState, socket: Socket, channel: str) -> None:
        cached = self.view.cached(state.app.id, channel, self.clock())
        if cached is None:
            socket.send(text_frame(messages.cache_miss(channel)))
            if state.app.webhooks:
                self.webhooks.cache_miss(state.app, channel)
        else:
            socket.send(text_frame(messages.cache_hit(cached.event, channel, cached.data)))

    def _unsubscribe(self, state: AppState, socket: Socket, channel: str) -> None:
        session = socket.session
        if channel not in session.channels:
            return
        app_id = state.app.id
        user_id = session.channels.pop(channel)
        state.leave(channel, socket)
        gone = None
        if user_id is not None:
            roster = self.view.roster(app_id, channel)
            info = roster.info(user_id) if roster is not None else None
            gone = self.view.leave(app_id, channel, session.socket_id)
            self._send()
            if gone is not None:
                self._member_removed(app_id, channel, gone, Member(gone, info))
        self.counts.local_changed(app_id, channel)
        if state.app.webhooks:
            self.webhooks.channel(app_id, channel)
        if self.events.listeners:
            emit = self.events.emit
            emit(events.Unsubscribed(app_id, channel, session.socket_id))
            if gone is not None:
                emit(events.MemberRemoved(app_id, channel, gone))
            if not self.counts.total(app_id, channel):
                emit(events.ChannelVacated(app_id, channel))

    def _member_removed(
        self, app_id: str, channel: str, user_id: str, before: Member | None = None
    ) -> None:
        self._presence.removed((app_id, channel), user_id, before)
        self._end_tick_soon()
        self.webhooks.member(app_id, channel, user_id)

    def _returning(self, state: AppState, channel: str, member: Member | None) -> str | None:
        """The joining user, when its departure from ``channel`` is pending in this tick: that
        change waits, so that leaving and coming back as it was sends the others nothing."""
        if member is not None and self._presence.leaving((state.app.id, channel), member.user_id):
            return member.user_id
        return None

    def _end_tick_soon(self) -> None:
        if not self._tick_pending:
            self._tick_pending = True
            soon(self._end_tick)

    def _end_tick(self) -> None:
        """The presence and count events of this loop tick, each channel's once (churn within
        a tick reaches the other subscribers as its net change: docs/security.md)."""
        self._tick_pending = False
        for app_id, channel in list(self._presence.pending):
            self._flush_presence(app_id, channel)
        self.counts.end_tick()

    def _flush_presence(self, app_id: str, channel: str, keep: str | None = None) -> None:
        for message, exclude in self._presence.take((app_id, channel), keep):
            self._deliver(app_id, channel, message, exclude)

    # users ---------------------------------------------------------------------------------
    def terminate_user(self, app: App, user_id: str) -> int:
        """Close every signed-in socket of ``user_id`` in the cluster (HTTP
        ``terminate_connections``); returns how many were on this node."""
        return self.users.terminate(app.id, user_id)

    def claim_signature(self, signature: str, timestamp: int, now: float) -> Claim:
        """The replay guard's verdict on a verified HTTP API signature (always FIRST when it
        is off); a first use is told to the other nodes, once per loop tick for all."""
        if self.replay is None:
            return Claim.FIRST
        claim = self.replay.claim(signature, timestamp, now)
        if claim is Claim.FIRST:
            if not self._seen:
                soon(self._send_seen)
            self._seen.append((signature, timestamp + WINDOW))
        return claim

    def _send_seen(self) -> None:
        seen, self._seen = self._seen, []
        self.view.seen(seen)
        self._send()

    # publishing ----------------------------------------------------------------------------
    def publishable(self) -> bool:
        """Whether an HTTP publish can be taken now (:meth:`ClusterLink.publishable`)."""
        return self.link.publishable()

    def publish(
        self, app: App, channel: str, event: str, data: str, exclude: str | None = None
    ) -> None:
        """Publish an HTTP API event on ``channel`` cluster-wide; cache channels keep it."""
        self.hub.state(app).received_api += 1
        if channels.kind_of(channel).cache:
            cached = CachedEvent(event, data, self.clock() + app.cache_ttl)
            self.view.remember(app.id, channel, cached, app.cache_ttl)
            self._send()
        if self.events.listeners:
            self.events.emit(events.MessagePublished(app.id, channel, event, len(data), data))
        frame = messages.encode_event(event, channel, data)
        self._fan_out(app.id, channel, frame, exclude)

    def _fan_out(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        """Deliver here at once, and through the broker on every other node."""
        if self._presence.pending:
            self._flush_presence(app_id, channel)
        if self._deliver(app_id, channel, message, exclude) and not self._tick_publish:
            self._tick_publish = self.clock()  # accepted now: the caller has just taken it
        self.broker.publish(app_id, channel, message, exclude)

    def written(self) -> None:
        """The transport wrote this loop tick's frames (it calls this once per tick, after
        its writes): the tick's first delivered publish is observed, then forgotten."""
        if self._tick_publish:
            self.publish_latency.observe(self.clock() - self._tick_publish)
            self._tick_publish = 0.0

    def deliver(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        """Write ``message`` to this node's subscribers of ``channel``: encoded once, the same
        bytes queued on every socket (docs/design.md "Hot-path rules"), after the channel's
        member events of this tick (they happened first)."""
        if self._presence.pending:
            self._flush_presence(app_id, channel)
        self._deliver(app_id, channel, message, exclude)

    def _deliver(self, app_id: str, channel: str, message: str, exclude: str | None) -> int:
        """The number of sockets ``message`` was queued on (counted once per message)."""
        state = self.hub.get(app_id)
        if state is None:
            return 0
        subscribers = state.channels.get(channel)
        if not subscribers:
            return 0
        frame = text_frame(message)
        if exclude is None:
            for socket in subscribers.values():
                socket.send(frame)
            sockets = len(subscribers)
        else:
            for socket_id, socket in subscribers.items():
                if socket_id != exclude:
                    socket.send(frame)
            sockets = len(subscribers) - (exclude in subscribers)
        state.sent += sockets
        state.bytes_sent += sockets * len(frame)
        if self.events.listeners:  # once per message, never per socket
            self.events.emit(events.Delivered(app_id, channel, sockets, len(frame)))
        return sockets

    def housekeeping(self) -> None:
        """Periodic housekeeping: expired cache entries, pending counts of large channels."""
        self.view.expire_cache(self.clock())
        self.counts.flush_large()
        self.debug.expire(self.clock())
        self.webhooks.housekeeping()

    # the other nodes (the broker's handler; ClusterLink does the work) ----------------------
    def control(self, origin: str, payload: str) -> None:
        """A control message from another node (:class:`~ressonance.scaling.base.Broker`)."""
        self.link.receive(origin, payload)

    def link_changed(self, up: bool) -> None:
        self.link.changed(up)

    def heartbeat(self) -> None:
        self.link.heartbeat()

    def announce_drain(self) -> None:
        self.link.announce_drain()

    def unready(self) -> list[str]:
        return self.link.unready()

    @property
    def has_peers(self) -> bool:
        return bool(self.view.peers)

    @property
    def node_timeout(self) -> float:
        return self.link.node_timeout

    @property
    def stalls(self) -> int:
        return self.link.stalls

    @property
    def publishes_refused(self) -> int:
        return self.link.publishes_refused

    def _apply(self, effects: list[Effect]) -> None:
        """What the other nodes' messages mean here (their changes are emitted there)."""
        for effect in effects:
            if isinstance(effect, MemberAdded):
                self._presence.added((effect.app_id, effect.channel), effect.member, None)
                self.webhooks.member(effect.app_id, effect.channel, effect.member.user_id)
                self._end_tick_soon()
            elif isinstance(effect, MemberRemoved):
                self._member_removed(effect.app_id, effect.channel, effect.user_id)
            elif isinstance(effect, CountChanged):
                self.counts.changed(effect.app_id, effect.channel)
                self.webhooks.channel(effect.app_id, effect.channel)
            elif isinstance(effect, Terminate):
                self.users.terminate_here(effect.app_id, effect.user_id)
            elif isinstance(effect, SendState):
                self.link.want_state()
            elif isinstance(effect, AppsChanged):
                self.on_apps_changed(effect.app_id)
            elif isinstance(effect, DebugWatch | DebugEntry):
                self.debug.apply(effect)
            elif isinstance(effect, Seen) and self.replay is not None:
                self.replay.expire(time.time())
                for key, expires in effect.signatures:
                    self.replay.remember(key, expires)
