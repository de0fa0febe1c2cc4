"""One connection's protocol state: it turns a client frame into one action for the node.

Sans-I/O: the caller passes the frame text and ``now`` (seconds, monotonic), then applies the
returned action (docs/protocol.md, "Client frames", "Subscription errors", "Presence members",
"Client event rules", "Signatures"). Nothing here writes a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ressonance.errors import PusherError, SubscriptionError
from ressonance.models import App
from ressonance.protocol import channels, codes, messages, signatures
from ressonance.protocol.presence import Member, parse_channel_data

MAX_WATCHLIST = 100


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``frame`` to this socket only."""

    frame: str


@dataclass(frozen=True, slots=True)
class Fail:
    """Send ``pusher:error`` with ``code``; close with it too when the code is fatal."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Join ``channel``; ``member`` is set for presence channels."""

    channel: str
    kind: channels.ChannelKind
    member: Member | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """Associate the socket with ``user_id`` and answer ``pusher:signin_success``."""

    user_id: str
    user_data: str
    watchlist: tuple[str, ...]
    watchlist_truncated: bool


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Forward a ``client-`` event to the channel's other subscribers (never to the sender)."""

    channel: str
    event: str
    data: Any
    user_id: str | None


@dataclass(frozen=True, slots=True)
class Refuse:
    """A subscription refused for the connection's rate: ``pusher:error`` ``code`` (non-fatal,
    as for client events), then ``frame``, the channel's ``pusher:subscription_error``, so the
    channel's listeners (Echo's ``.error()``) hear it too instead of waiting."""

    code: int
    message: str
    frame: str


Action = Reply | Fail | Refuse | Subscribe | Unsubscribe | SignIn | ClientEvent


class Session:
    """Protocol state of one socket: its app, id, channels, signed-in user and rate window."""

    __slots__ = (
        "_ce_count",
        "_ce_window",
        "_sub_count",
        "_sub_window",
        "app",
        "channels",
        "socket_id",
        "user_id",
    )

    def __init__(self, app: App, socket_id: str) -> None:
        self.app = app
        self.socket_id = socket_id
        self.channels: dict[str, str | None] = {}  # channel -> presence user id (or None)
        self.user_id: str | None = None
        self._ce_window = 0.0
        self._ce_count = 0
        self._sub_window = 0.0
        self._sub_count = 0

    def receive(self, text: str, now: float) -> Action | None:
        """Handle one text frame; return what the node must do, or None (ignored/liveness)."""
        try:
            message = messages.parse_client_frame(text)
            event = message.event
            if event.startswith("client-"):
                return self._client_event(message, now)
            if event == "pusher:ping":
                return Reply(messages.PONG)
            if event == "pusher:subscribe":
                return self._subscribe(message.data_object(), now)
            if event == "pusher:unsubscribe":
                channel = message.data_object().get("channel")
                return Unsubscribe(channel) if isinstance(channel, str) else None
            if event == "pusher:signin":
                return self._signin(message.data_object())
            if event == "pusher:pong":
                return None
            raise PusherError(codes.INVALID_MESSAGE, f"Unsupported event: {event[:64]}")
        except PusherError as exc:
            return Fail(exc.code, exc.message)

    # pusher:subscribe -------------------------------------------------------------------
    def _subscribe(self, data: dict[str, Any], now: float) -> Action:
        channel = data.get("channel")
        if not channels.is_valid_name(channel):
            # the name is echoed whole so pusher-js routes the error to that channel object
            shown = channel if isinstance(channel, str) else ""
            return Reply(
                messages.subscription_error(shown, "InvalidChannel", "Invalid channel name", 4009)
            )
        assert isinstance(channel, str)
        try:
            self._check_limits(channel, now)
            return self._authorize(channel, data)
        except SubscriptionError as exc:
            frame = messages.subscription_error(channel, exc.kind, exc.message, exc.status)
            if exc.status == codes.CLIENT_EVENT_REJECTED:
                return Refuse(exc.status, exc.message, frame)
            return Reply(frame)

    def _check_limits(self, channel: str, now: float) -> None:
        """The app's subscription rate (4301, as for client events) and channels per connection
        (``LimitReached``/4100, as for a full presence channel); see docs/security.md.
        Unsubscribing is never limited: each one needs a subscription before it."""
        app = self.app
        cap = app.max_channels_per_connection
        if cap and len(self.channels) >= cap and channel not in self.channels:
            raise SubscriptionError(
                "LimitReached", f"At most {cap} channels per connection", codes.OVER_CAPACITY
            )
        taken = _take(self._sub_window, self._sub_count, app.max_subscriptions_per_second, now)
        if taken is None:
            raise SubscriptionError(
                "LimitReached", "Subscription rate limit reached", codes.CLIENT_EVENT_REJECTED
            )
        self._sub_window, self._sub_count = taken

    def _authorize(self, channel: str, data: dict[str, Any]) -> Subscribe:
        kind = channels.kind_of(channel)
        if kind.user:
            if self.user_id is None or channel != channels.user_channel(self.user_id):
                raise SubscriptionError("AuthError", "Sign in as this user first", 401)
            return Subscribe(channel, kind, None)
        if not kind.needs_auth:
            return Subscribe(channel, kind, None)
        channel_data = data.get("channel_data") if kind.presence else None
        if kind.presence and not isinstance(channel_data, str):
            raise SubscriptionError("AuthError", "Presence channels need channel_data", 401)
        auth = data.get("auth")
        key, secret = self._credential(auth)
        expected = signatures.channel_auth(key, secret, self.socket_id, channel, channel_data)
        if not signatures.verify(expected, auth):
            raise SubscriptionError("AuthError", "Invalid signature", 401)
        member = None
        if kind.presence:
            member = parse_channel_data(channel_data, self.app.max_presence_member_kb * 1024)
        return Subscribe(channel, kind, member)

    def _credential(self, auth: object) -> tuple[str, str]:
        """The (key, secret) an ``auth`` string ``key:signature`` was signed with: any active
        pair of the app (two during a rotation); the newest when the key is not the app's, so
        the check fails as for a wrong signature."""
        app = self.app
        key = auth.partition(":")[0] if isinstance(auth, str) else app.key
        secret = app.secret_for(key)
        return (key, secret) if secret is not None else (app.key, app.secret)

    # pusher:signin ----------------------------------------------------------------------
    def _signin(self, data: dict[str, Any]) -> Action:
        user_data = data.get("user_data")
        if not isinstance(user_data, str):
            raise PusherError(codes.UNAUTHORIZED, "Sign-in needs user_data")
        auth = data.get("auth")
        key, secret = self._credential(auth)
        expected = signatures.user_auth(key, secret, self.socket_id, user_data)
        if not signatures.verify(expected, auth):
            raise PusherError(codes.UNAUTHORIZED, "Invalid sign-in signature")
        try:
            user = messages.loads(user_data)
        except (ValueError, RecursionError):
            raise PusherError(codes.UNAUTHORIZED, "user_data is not valid JSON") from None
        user_id = user.get("id") if isinstance(user, dict) else None
        if not isinstance(user_id, str) or not user_id:
            raise PusherError(codes.UNAUTHORIZED, "user_data needs a non-empty string id")
        if self.user_id is not None and self.user_id != user_id:
            raise PusherError(codes.UNAUTHORIZED, "Connection is signed in as another user")
        watch = user.get("watchlist")
        ids = [str(w) for w in watch if isinstance(w, str | int)] if isinstance(watch, list) else []
        return SignIn(user_id, user_data, tuple(ids[:MAX_WATCHLIST]), len(ids) > MAX_WATCHLIST)

    # client-* ---------------------------------------------------------------------------
    def _client_event(self, message: messages.ClientMessage, now: float) -> Action:
        app = self.app
        channel = message.channel
        if not app.client_events:
            raise PusherError(
                codes.CLIENT_EVENT_REJECTED, "Client events are disabled for this app"
            )
        if channel is None or channel not in self.channels:
            raise PusherError(codes.CLIENT_EVENT_REJECTED, "Subscribe to the channel first")
        kind = channels.kind_of(channel)
        if not kind.needs_auth or kind.encrypted:
            raise PusherError(
                codes.CLIENT_EVENT_REJECTED,
                "Client events are only for private and presence channels",
            )
        if len(message.event) > 200:
            raise PusherError(codes.CLIENT_EVENT_REJECTED, "Event name is too long")
        data = message.data
        size = len(data.encode()) if isinstance(data, str) else len(messages.dumps(data).encode())
        if size > app.max_payload_bytes:
            raise PusherError(codes.CLIENT_EVENT_REJECTED, "Event data is too large")
        limit = app.max_client_events_per_second
        taken = _take(self._ce_window, self._ce_count, limit, now)
        if taken is None:
            raise PusherError(codes.CLIENT_EVENT_REJECTED, "Client event rate limit reached")
        self._ce_window, self._ce_count = taken
        return ClientEvent(channel, message.event, data, self.channels[channel])


def _take(window: float, count: int, limit: int, now: float) -> tuple[float, int] | None:
    """At most ``limit`` in each one-second window starting at ``window`` (docs/protocol.md,
    "Client event rules"); ``limit`` 0 is unlimited. The window and count after one more, or
    None when over."""
    if limit <= 0:
        return window, count
    if now - window >= 1.0:
        window, count = now, 0
    if count >= limit:
        return None
    return window, count + 1
