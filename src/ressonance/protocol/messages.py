"""Parse client frames and encode server frames: one builder per kind of server frame, so that
no other module spells a Pusher event name (docs/protocol.md, "Server events" and "Client
frames"; https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/).

"Double encoding": the server always sends ``data`` as a JSON string for channel events; clients
may send ``data`` as an object or as a JSON string, and both are accepted (docs/protocol.md,
"Frames and encoding").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ressonance.errors import PusherError
from ressonance.protocol.codes import INVALID_MESSAGE

MAX_DEPTH = 100  # nesting of arrays and objects accepted from clients (docs/security.md)
_CONTAINERS = (dict, list)  # what json.loads nests (exact types: no subclasses come out of it)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _finite(text: str) -> float:
    """A JSON number with a fraction or exponent; ``1e999`` would become ``inf``, which no
    JSON text can carry (every frame that later held it would be unreadable to clients)."""
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan, and nan != 0
        raise ValueError("a number out of range")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# json.loads plus: NaN, Infinity and -Infinity (which Python accepts) are refused
_decode = json.JSONDecoder(parse_float=_finite, parse_constant=_constant).decode


def dumps(value: Any) -> str:
    """Compact JSON, the one encoder the protocol uses."""
    return _dumps(value)


def loads(text: str | bytes) -> Any:
    """``json.loads`` for what clients send; every refusal is a ``ValueError``.

    Refused besides invalid JSON: bytes that are not UTF-8 (``json.loads`` would decode raw
    surrogates with ``surrogatepass``, and UTF-16/32 too); a lone surrogate escape such as
    ``"\\ud800"`` (a string with no UTF-8 form: every frame or broker message that later
    carried it could not be sent); nesting deeper than :data:`MAX_DEPTH` (the C codec recurses:
    a value parsed near the recursion limit could fail to encode again later, deeper in the
    stack, in each frame that carries it)."""
    if isinstance(text, bytes):
        text = text.decode()  # UnicodeDecodeError is a ValueError
    try:
        value = _decode(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH}") from None
    if _too_deep(text, value):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH}")
    # one scan for any \u escape (rare in practice); only then the full check
    if "\\u" in text:
        try:
            _dumps(value).encode()
        except UnicodeEncodeError:
            raise ValueError("a lone surrogate in a string") from None
    return value


def _too_deep(text: str, value: Any) -> bool:
    """True when arrays and objects in ``value`` nest deeper than :data:`MAX_DEPTH`. Each level
    takes an opening bracket in ``text``: a text with few of them is not walked (the common
    case); the walk itself is a loop, not a recursion."""
    if len(text) <= 2 * MAX_DEPTH or text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    level = [value] if type(value) in _CONTAINERS else []
    for _ in range(MAX_DEPTH):  # one level of the tree per pass, breadth first
        below = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) in _CONTAINERS:
                    below.append(child)
        if not below:
            return False
        level = below
    return True


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """A parsed client frame. ``data`` is as sent: an object, a string or absent (None)."""

    event: str
    channel: str | None
    data: Any

    def data_object(self) -> dict[str, Any]:
        """``data`` as an object, decoding a JSON string; ``{}`` when it is neither. A string
        that is not JSON (or nested too deep) is a bad message like a frame that is not JSON:
        :class:`PusherError` 4300."""
        data = self.data
        if isinstance(data, str):
            try:
                data = loads(data)
            except ValueError:
                raise PusherError(INVALID_MESSAGE, "Invalid message: data is not JSON") from None
        return data if isinstance(data, dict) else {}


def parse_client_frame(text: str) -> ClientMessage:
    """Parse one text frame. Raises :class:`PusherError` (4300, non-fatal) for bad input."""
    try:
        frame = loads(text)
    except ValueError:
        raise PusherError(INVALID_MESSAGE, "Invalid message: not JSON") from None
    if not isinstance(frame, dict):
        raise PusherError(INVALID_MESSAGE, "Invalid message: expected a JSON object")
    event = frame.get("event")
    if not isinstance(event, str) or not event:
        raise PusherError(INVALID_MESSAGE, "Invalid message: missing event name")
    channel = frame.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise PusherError(INVALID_MESSAGE, "Invalid message: channel must be a string")
    return ClientMessage(event, channel, frame.get("data"))


def encode_event(event: str, channel: str | None, data: Any, user_id: str | None = None) -> str:
    """A server frame. A ``str`` ``data`` is sent as is; anything else is JSON-encoded first
    (double encoding), except when ``data`` is None (no ``data`` member)."""
    frame: dict[str, Any] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    if data is not None:
        frame["data"] = data if isinstance(data, str) else dumps(data)
    if user_id is not None:
        frame["user_id"] = user_id
    return dumps(frame)


def encode_client_event(event: str, channel: str, data: Any, user_id: str | None) -> str:
    """A client event as forwarded to other subscribers: ``data`` exactly as the sender gave it."""
    frame: dict[str, Any] = {"event": event, "channel": channel, "data": data}
    if user_id is not None:
        frame["user_id"] = user_id
    return dumps(frame)


def connection_established(socket_id: str, activity_timeout: int) -> str:
    return encode_event(
        "pusher:connection_established",
        None,
        {"socket_id": socket_id, "activity_timeout": activity_timeout},
    )


def error(code: int | None, message: str) -> str:
    """``pusher:error``: ``data`` is an object, as in the protocol doc's schema."""
    return dumps({"event": "pusher:error", "data": {"code": code, "message": message}})


def subscription_error(channel: str, kind: str, message: str, status: int) -> str:
    """``pusher:subscription_error``: the shape pusher-js passes to the channel and Echo's
    ``.error()`` (docs/protocol.md, "Subscription errors")."""
    return dumps(
        {
            "event": "pusher:subscription_error",
            "channel": channel,
            "data": {"type": kind, "error": message, "status": status},
        }
    )


def limit_reached(channel: str, message: str, status: int) -> str:
    """``pusher:subscription_error`` of type ``LimitReached``: a full channel or a cap hit."""
    return subscription_error(channel, "LimitReached", message, status)


def subscription_succeeded(channel: str, presence: dict[str, Any] | None = None) -> str:
    """``pusher_internal:subscription_succeeded``: ``{}``, or ``{"presence": ...}`` (ids, hash
    and count) on a presence channel."""
    data: dict[str, Any] = {} if presence is None else {"presence": presence}
    return encode_event("pusher_internal:subscription_succeeded", channel, data)


def subscription_count(channel: str, count: int) -> str:
    return encode_event(
        "pusher_internal:subscription_count", channel, {"subscription_count": count}
    )


def member_added(channel: str, user_id: str, user_info: Any) -> str:
    return encode_event(
        "pusher_internal:member_added", channel, {"user_id": user_id, "user_info": user_info}
    )


def member_removed(channel: str, user_id: str) -> str:
    return encode_event("pusher_internal:member_removed", channel, {"user_id": user_id})


def signin_success(user_data: str) -> str:
    """``pusher:signin_success``: ``user_data`` is the JSON string the client signed in with."""
    return encode_event("pusher:signin_success", None, {"user_data": user_data})


def watchlist_events(name: str, user_ids: list[str]) -> str:
    """``pusher_internal:watchlist_events`` with one event: ``online`` or ``offline``."""
    return encode_event(
        "pusher_internal:watchlist_events",
        None,
        {"events": [{"name": name, "user_ids": user_ids}]},
    )


def cache_hit(event: str, channel: str, data: Any) -> str:
    """The last event a cache channel kept, sent as it was published."""
    return encode_event(event, channel, data)


PING = dumps({"event": "pusher:ping", "data": {}})
PONG = dumps({"event": "pusher:pong", "data": {}})


def cache_miss(channel: str) -> str:
    return dumps({"event": "pusher:cache_miss", "channel": channel})
