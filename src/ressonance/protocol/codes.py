"""Pusher error and close codes, and the WebSocket close codes: the one place each is defined.

Ranges tell pusher-js what to do next: 4000-4099 do not reconnect unchanged, 4100-4199 reconnect
after a back-off, 4200-4299 reconnect at once, 4300-4399 are sent as ``pusher:error`` only and
never used to close a socket (docs/protocol.md, "Error codes", and the public list in
https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#error-codes).
Which code Ressonance sends when: docs/protocol.md, "Close codes".
"""

from __future__ import annotations

SSL_ONLY = 4000
APP_NOT_FOUND = 4001
APP_DISABLED = 4003
OVER_CONNECTION_QUOTA = 4004
PATH_NOT_FOUND = 4005
INVALID_VERSION = 4006
UNSUPPORTED_PROTOCOL = 4007
NO_PROTOCOL = 4008
UNAUTHORIZED = 4009
OVER_CAPACITY = 4100
RECONNECT_NOW = 4200
PONG_NOT_RECEIVED = 4201
INACTIVITY = 4202
INVALID_MESSAGE = 4300  # non-fatal "other" range: the socket stays open
CLIENT_EVENT_REJECTED = 4301
WATCHLIST_LIMIT = 4302

# WebSocket (RFC 6455 §7.4.1) close codes used at the framing layer.
WS_NORMAL = 1000
WS_GOING_AWAY = 1001
WS_PROTOCOL_ERROR = 1002
WS_UNSUPPORTED_DATA = 1003
WS_INVALID_PAYLOAD = 1007
WS_POLICY_VIOLATION = 1008
WS_MESSAGE_TOO_BIG = 1009
WS_INTERNAL_ERROR = 1011
# never sent, only reported (metrics): a close frame without a code, a connection without one
WS_NO_STATUS = 1005
WS_ABNORMAL = 1006


def is_fatal(code: int) -> bool:
    """True when a ``pusher:error`` with ``code`` must be followed by a close with that code."""
    return 4000 <= code < 4300
