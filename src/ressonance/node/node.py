"""Applies what sessions ask for, using the hub (this node's sockets), the cluster view (what is
shared with the other nodes) and the broker (the link to them).

The transport calls :meth:`Node.admit` and :meth:`Node.connect` when a WebSocket opens,
:meth:`Node.receive` per text message and :meth:`Node.disconnect` when it closes. The HTTP API
calls :meth:`Node.publish`, :meth:`Node.terminate_user` and :mod:`ressonance.node.queries`. The
broker calls :meth:`Node.deliver`, :meth:`Node.control` and :meth:`Node.link_changed`; the server
calls :meth:`Node.heartbeat` every second and :meth:`Node.housekeeping` every few.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

from ressonance.errors import PusherError
from ressonance.models import App
from ressonance.node.cluster import (
    CachedEvent,
    ClusterView,
    CountChanged,
    Effect,
    MemberAdded,
    MemberRemoved,
    Seen,
    SendState,
    Terminate,
)
from ressonance.node.coalesce import PresenceChanges
from ressonance.node.hub import AppState, Hub, Socket
from ressonance.node.replay import WINDOW, Claim, ReplayGuard
from ressonance.protocol import channels, codes, messages
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

log = logging.getLogger("ressonance.node")

LARGE_CHANNEL = 100  # above this, subscription_count events are sent every few seconds
STATE_INTERVAL = 0.5  # seconds: the least time between two full states of this node
STALLED = 2.0  # seconds between two ticks (one a second) that mean this node did not run
EMPTY_PRESENCE = {"ids": [], "hash": {}, "count": 0}


def new_socket_id() -> str:
    """``\\d+.\\d+`` as the server SDKs require (PROTOCOL.md A §1.8)."""
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}"


def check_protocol(protocol: str | None) -> None:
    """Part B item 2: a given ``protocol`` must be 7 (4007); a missing one is accepted."""
    if protocol is None or protocol == "7":
        return
    if not protocol.isascii() or not protocol.isdigit():  # isdigit alone accepts "²"
        raise PusherError(codes.INVALID_VERSION, "Invalid protocol version")
    shown = protocol if len(protocol) <= 10 else protocol[:10] + "..."  # never echo 16 KB
    raise PusherError(codes.UNSUPPORTED_PROTOCOL, f"Unsupported protocol version {shown}")


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
        self.hub = Hub()
        self.replay = replay  # None: replay_guard is off
        self._seen: list[tuple[str, float]] = []  # served signatures to tell the others
        self.broker = broker
        self.activity_timeout = activity_timeout
        self.clock = clock
        self.node_timeout = node_timeout
        self.view = ClusterView(broker.node_id, region, clock())
        self._pending_counts: set[tuple[str, str]] = set()
        self._tick_counts: set[tuple[str, str]] = set()  # counts to send at the tick's end
        self._presence = PresenceChanges()  # member events to send at the tick's end
        self._tick_pending = False
        self._changed_counts: set[tuple[str, str]] = set()
        self._link_up_since: float | None = None
        self._link_down_since: float | None = None
        self._ticked = clock()
        self.stalls = 0  # times this node did not run for STALLED seconds or more (counted)
        self.publishes_refused = 0  # HTTP publishes answered 503 (counted)
        self._refusing = 0  # ... of the current run, for the log
        self._draining = False
        self._state_pending = False
        self._state_sent = -STATE_INTERVAL

    async def start(self) -> None:
        await self.broker.start(self)
        self._ticked = self.clock()  # the broker may have taken a while
        if not self.broker.connected:
            self._link_down_since = self._ticked
        elif self._link_up_since is None:
            self.link_changed(True)

    async def stop(self) -> None:
        """Say goodbye to the other nodes (after the sockets were closed), then disconnect."""
        self._send_counts()
        self.view.bye()
        self._send()
        await self.broker.close()

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
        if app.max_connections:
            state = self.hub.get(app.id)
            here = len(state.sockets) if state else 0
            if here + self.view.remote_connections(app.id) >= app.max_connections:
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
            self._fan_out(state.app.id, action.channel, frame, socket.session.socket_id)
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
        elif isinstance(action, Refuse):
            self.fail(socket, action.code, action.message)
            socket.send(text_frame(action.frame))

    def fail(self, socket: Socket, code: int, message: str) -> None:
        """``pusher:error``, then a close with the same code when it is fatal (Part B item 1)."""
        socket.send(text_frame(messages.error(code, message)))
        if codes.is_fatal(code):
            socket.close(code, message)

    # subscriptions -------------------------------------------------------------------------
    def _subscribe(self, state: AppState, socket: Socket, action: Subscribe) -> None:
        session = socket.session
        channel, member = action.channel, action.member
        if action.kind.presence:  # this tick's member events go to those subscribed before
            self._flush_presence(state.app.id, channel, self._returning(state, channel, member))
        if channel in session.channels:  # subscribing twice: answer again, change nothing
            socket.send(text_frame(self._succeeded(state, channel)))
            return
        first = False
        if member is not None:
            roster = self.view.roster(state.app.id, channel)
            limit = state.app.max_presence_members
            if roster and member.user_id not in roster and limit and len(roster) >= limit:
                socket.send(
                    text_frame(messages.limit_reached(channel, "Presence channel is full", 4100))
                )
                return
            first = self.view.join(state.app.id, channel, session.socket_id, member)
            self._send()
        session.channels[channel] = member.user_id if member else None
        state.join(channel, socket)
        socket.send(text_frame(self._succeeded(state, channel)))
        if member is not None and first:
            self._presence.added((state.app.id, channel), member, session.socket_id)
            self._end_tick_soon()
        if action.kind.cache:
            self._send_cached(state, socket, channel)
        self._local_count_changed(state, channel)

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
        else:
            socket.send(text_frame(messages.cache_hit(cached.event, channel, cached.data)))

    def _unsubscribe(self, state: AppState, socket: Socket, channel: str) -> None:
        session = socket.session
        if channel not in session.channels:
            return
        user_id = session.channels.pop(channel)
        state.leave(channel, socket)
        if user_id is not None:
            roster = self.view.roster(state.app.id, channel)
            info = roster.info(user_id) if roster is not None else None
            gone = self.view.leave(state.app.id, channel, session.socket_id)
            self._send()
            if gone is not None:
                self._member_removed(state.app.id, channel, gone, Member(gone, info))
        self._local_count_changed(state, channel)

    def _member_removed(
        self, app_id: str, channel: str, user_id: str, before: Member | None = None
    ) -> None:
        self._presence.removed((app_id, channel), user_id, before)
        self._end_tick_soon()

    def _returning(self, state: AppState, channel: str, member: Member | None) -> str | None:
        """The joining user, when its departure from ``channel`` is pending in this tick: that
        change waits, so that leaving and coming back as it was sends the others nothing."""
        if member is not None and self._presence.leaving((state.app.id, channel), member.user_id):
            return member.user_id
        return None

    def _end_tick_soon(self) -> None:
        if not self._tick_pending:
            self._tick_pending = True
            _soon(self._end_tick)

    def _end_tick(self) -> None:
        """The presence and count events of this loop tick, each channel's once (churn within
        a tick reaches the other subscribers as its net change: docs/security.md)."""
        self._tick_pending = False
        for app_id, channel in list(self._presence.pending):
            self._flush_presence(app_id, channel)
        counts, self._tick_counts = self._tick_counts, set()
        for app_id, channel in counts:
            if self._local_count(app_id, channel):
                self._send_count(app_id, channel)

    def _flush_presence(self, app_id: str, channel: str, keep: str | None = None) -> None:
        for message, exclude in self._presence.take((app_id, channel), keep):
            self._deliver(app_id, channel, message, exclude)

    # subscription counts -------------------------------------------------------------------
    def _local_count_changed(self, state: AppState, channel: str) -> None:
        """Tell the other nodes (once per loop tick), and this node's subscribers."""
        first_change = not self._changed_counts
        self._changed_counts.add((state.app.id, channel))
        if first_change:
            _soon(self._send_counts)
        self._count_changed(state.app.id, channel)

    def _send_counts(self) -> None:
        changed, self._changed_counts = self._changed_counts, set()
        if changed:
            self.view.counts({key: self._local_count(*key) for key in changed})
            self._send()

    def _local_count(self, app_id: str, channel: str) -> int:
        state = self.hub.get(app_id)
        subscribers = state.channels.get(channel) if state is not None else None
        return len(subscribers) if subscribers else 0

    def _count_changed(self, app_id: str, channel: str) -> None:
        """``pusher_internal:subscription_count`` (cluster-wide) to this node's subscribers of a
        non-presence channel, when the app enables it; channels over 100 subscribers get it
        from :meth:`flush_counts`."""
        state = self.hub.get(app_id)
        if state is None or not state.app.subscription_count or channel not in state.channels:
            return
        kind = channels.kind_of(channel)
        if kind.presence or kind.user:
            return
        if self._total_count(app_id, channel) > LARGE_CHANNEL:
            self._pending_counts.add((app_id, channel))
            return
        self._tick_counts.add((app_id, channel))
        self._end_tick_soon()

    def _total_count(self, app_id: str, channel: str) -> int:
        return self._local_count(app_id, channel) + self.view.remote_count(app_id, channel)

    def _send_count(self, app_id: str, channel: str) -> None:
        count = self._total_count(app_id, channel)
        frame = messages.subscription_count(channel, count)
        self._deliver(app_id, channel, frame, None)

    def flush_counts(self) -> None:
        """Send the pending counts of large channels (call every few seconds)."""
        pending, self._pending_counts = self._pending_counts, set()
        for app_id, channel in pending:
            if self._local_count(app_id, channel):
                self._send_count(app_id, channel)

    # users -----------------------------------------------------------------------------
    def _sign_in(self, state: AppState, socket: Socket, action: SignIn) -> None:
        session = socket.session
        socket.send(text_frame(messages.signin_success(action.user_data)))
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
            state.watch(socket, action.watchlist)
            online = [w for w in action.watchlist if w in state.users]
            if online:
                socket.send(text_frame(messages.watchlist_events("online", online)))

    def _sign_out(self, state: AppState, socket: Socket, user_id: str) -> None:
        sockets = state.users.get(user_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del state.users[user_id]
                self._notify_watchers(state, user_id, "offline")
        state.unwatch(socket)

    def _notify_watchers(self, state: AppState, user_id: str, name: str) -> None:
        watchers = state.watchers.get(user_id)
        if watchers:
            frame = text_frame(messages.watchlist_events(name, [user_id]))
            for watcher in watchers:
                watcher.send(frame)

    def claim_signature(self, signature: str, timestamp: int, now: float) -> Claim:
        """The replay guard's verdict on a verified HTTP API signature (always FIRST when it
        is off); a first use is told to the other nodes, once per loop tick for all."""
        if self.replay is None:
            return Claim.FIRST
        claim = self.replay.claim(signature, timestamp, now)
        if claim is Claim.FIRST:
            if not self._seen:
                _soon(self._send_seen)
            self._seen.append((signature, timestamp + WINDOW))
        return claim

    def _send_seen(self) -> None:
        seen, self._seen = self._seen, []
        self.view.seen(seen)
        self._send()

    def terminate_user(self, app: App, user_id: str) -> int:
        """Close every signed-in socket of ``user_id`` in the cluster (HTTP
        ``terminate_connections``); returns how many were on this node."""
        self.view.terminate(app.id, user_id)
        self._send()
        return self._terminate_here(app.id, user_id)

    def _terminate_here(self, app_id: str, user_id: str) -> int:
        state = self.hub.get(app_id)
        sockets = list(state.users.get(user_id, ())) if state else []
        for socket in sockets:
            self.fail(socket, codes.UNAUTHORIZED, "Connection terminated by the app")
        return len(sockets)

    # publishing ----------------------------------------------------------------------------
    def publishable(self) -> bool:
        """Whether an HTTP publish can be taken now: not while the broker's outbox is full (the
        link is down, or back and not caught up yet), where it would push an older frame out
        unseen. The API answers 503 then; refusals are counted, and logged when a run of them
        starts and ends."""
        if not self.broker.full:
            if self._refusing:
                log.info("HTTP publishes accepted again (%d refused)", self._refusing)
                self._refusing = 0
            return True
        if not self._refusing:
            log.warning("the cluster link's outbox is full: HTTP publishes are answered 503")
        self._refusing += 1
        self.publishes_refused += 1
        return False

    def publish(
        self, app: App, channel: str, event: str, data: str, exclude: str | None = None
    ) -> None:
        """Publish an HTTP API event on ``channel`` cluster-wide; cache channels keep it."""
        if channels.kind_of(channel).cache:
            cached = CachedEvent(event, data, self.clock() + app.cache_ttl)
            self.view.remember(app.id, channel, cached, app.cache_ttl)
            self._send()
        self._fan_out(app.id, channel, messages.encode_event(event, channel, data), exclude)

    def _fan_out(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        """Deliver here at once, and through the broker on every other node."""
        self.deliver(app_id, channel, message, exclude)
        self.broker.publish(app_id, channel, message, exclude)

    def deliver(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        """Write ``message`` to this node's subscribers of ``channel``: encoded once, the same
        bytes queued on every socket (docs/design.md "Hot-path rules"), after the channel's
        member events of this tick (they happened first)."""
        if self._presence.pending:
            self._flush_presence(app_id, channel)
        self._deliver(app_id, channel, message, exclude)

    def _deliver(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
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

    def housekeeping(self) -> None:
        """Periodic housekeeping: expired cache entries, pending subscription counts."""
        self.view.expire_cache(self.clock())
        self.flush_counts()

    # the other nodes -----------------------------------------------------------------------
    def control(self, origin: str, payload: str) -> None:
        """A control message from another node (:class:`~ressonance.scaling.base.Broker`)."""
        self._apply(self.view.receive(origin, payload, self.clock()))
        self._send()

    def link_changed(self, up: bool) -> None:
        """The broker's link went down or came back; when back, announce this node again
        (messages may have been lost both ways)."""
        now = self.clock()
        if not up:
            self._link_up_since = None
            if self._link_down_since is None:
                self._link_down_since = now
            log.warning("cluster link down: serving this node's sockets only")
            return
        self._link_down_since = None
        if self._link_up_since is None:
            self._link_up_since = now
        self.view.hello(self._connections(), self.hub.counts(), now)
        self._send()

    def unready(self) -> list[str]:
        """Why this node should get no new connections now (none: it is ready), for
        ``GET /ready``: the one place where the reasons are made."""
        reasons = []
        if self._draining:
            reasons.append("draining")
        if self._link_down_since is not None:
            down = self.clock() - self._link_down_since
            if down > self.node_timeout:
                reasons.append(f"broker link down for {down:.0f} s")
        return reasons

    @property
    def has_peers(self) -> bool:
        return bool(self.view.peers)

    def announce_drain(self) -> None:
        """A drain starts: from now on the heartbeats count no connections here, since every
        one is about to be closed with 4200 and reconnect elsewhere (it must not be counted
        twice against ``max_connections`` there). Tells the other nodes at once."""
        self._draining = True
        self.view.heartbeat(self._connections())
        self._send()

    def _connections(self) -> dict[str, int]:
        return {} if self._draining else self.hub.connections()

    def heartbeat(self) -> None:
        """Every second, while the link is up: a heartbeat (the re-announcement after an
        outage stands for those missed), and drop the nodes silent for ``node_timeout`` seconds.
        Silence must be theirs: it counts only once this node has heard the cluster that long,
        with its link up and itself running. A node that did not run (stopped with SIGSTOP,
        starved) finds their traffic waiting when it runs again, and it comes after this."""
        now = self.clock()
        stalled, self._ticked = now - self._ticked, now
        if stalled >= STALLED:
            self.stalls += 1
            log.warning("this node did not run for %.1f s; others' silence counts anew", stalled)
            if self._link_up_since is not None:
                self._link_up_since = now
        since = self._link_up_since
        if since is None:
            return
        self.view.heartbeat(self._connections())
        if now - since >= self.node_timeout:
            for node_id in self.view.silent(now, self.node_timeout):
                log.warning("node %s went silent: removing its members", node_id)
                self._apply(self.view.drop(node_id))
        self._send()

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, MemberAdded):
                self._presence.added((effect.app_id, effect.channel), effect.member, None)
                self._end_tick_soon()
            elif isinstance(effect, MemberRemoved):
                self._member_removed(effect.app_id, effect.channel, effect.user_id)
            elif isinstance(effect, CountChanged):
                self._count_changed(effect.app_id, effect.channel)
            elif isinstance(effect, Terminate):
                self._terminate_here(effect.app_id, effect.user_id)
            elif isinstance(effect, SendState):
                self._want_state()
            elif isinstance(effect, Seen) and self.replay is not None:
                self.replay.expire(time.time())
                for key, expires in effect.signatures:
                    self.replay.remember(key, expires)

    def _want_state(self) -> None:
        """Send this node's full state for a ``hello`` or ``sync``: once for all the requests
        of a loop tick, and at most every ``STATE_INTERVAL`` seconds (every node asks after a
        broker outage; a state is this node's whole picture and answers them all)."""
        if self._state_pending:
            return
        self._state_pending = True
        wait = self._state_sent + STATE_INTERVAL - self.clock()
        _soon(self._send_state, max(0.0, wait))

    def _send_state(self) -> None:
        self._state_pending = False
        self._state_sent = self.clock()
        self.view.send_state(self._connections(), self.hub.counts(), self._state_sent)
        self._send()

    def _send(self) -> None:
        outbox = self.view.outbox
        if outbox:
            self.view.outbox = []
            for payload in outbox:
                self.broker.send(payload)


def _soon(callback: Callable[[], None], delay: float = 0.0) -> None:
    """Run ``callback`` at the end of this loop tick, or ``delay`` seconds later (at once when
    no loop runs: node tests)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        callback()
        return
    if delay > 0:
        loop.call_later(delay, callback)
    else:
        loop.call_soon(callback)
