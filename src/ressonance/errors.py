"""One exception tree. Each error carries the Pusher code or HTTP status it is reported with.

Lower-level errors (JSON, httptools, OS) are translated into these at the layer boundary, so a
caller only ever catches :class:`RessonanceError` subclasses and never leaks internals to a peer.

The tree, and what each class carries besides its message::

    RessonanceError
     ├── ConfigError            the setting at fault, in the message
     ├── PusherError            code, message: sent as pusher:error; a close with the same
     │                          code follows when codes.is_fatal(code) (4000-4299)
     ├── SubscriptionError      kind, message, status: sent as pusher:subscription_error;
     │                          the socket stays open
     ├── HttpError              status, message: an HTTP API error response
     │    └── Unavailable       retry_after: 503 with Retry-After (ressonance.http.api)
     └── FrameError             code, reason: the peer broke RFC 6455; close with code
                                (ressonance.transport.frames)

Codes and statuses: docs/protocol.md, "Error codes", "Close codes", "Subscription errors" and
"HTTP API reference", and the Pusher documentation
(https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/ for the
WebSocket protocol, https://pusher.com/docs/channels/library_auth_reference/rest-api/ for the
HTTP API).
"""

from __future__ import annotations


class RessonanceError(Exception):
    """Base of every error Ressonance raises on purpose."""


class ConfigError(RessonanceError):
    """The configuration is invalid; the message says which setting and why."""


class PusherError(RessonanceError):
    """A protocol error for a WebSocket peer, reported as ``pusher:error`` with ``code``.

    The connection is then closed with the same code when the code is fatal
    (:func:`ressonance.protocol.codes.is_fatal`: every 4000-4299 condition is, 43xx never is;
    docs/protocol.md, "Error codes").
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SubscriptionError(RessonanceError):
    """A subscription was refused with ``pusher:subscription_error``; the socket stays open
    (docs/protocol.md, "Subscription errors")."""

    def __init__(self, kind: str, message: str, status: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


class HttpError(RessonanceError):
    """An HTTP API error answered with ``status`` and ``message`` as the body's reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
