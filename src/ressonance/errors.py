"""One exception tree. Each error carries the Pusher code or HTTP status it is reported with.

Lower-level errors (JSON, httptools, OS) are translated into these at the layer boundary, so a
caller only ever catches :class:`RessonanceError` subclasses and never leaks internals to a peer.
"""

from __future__ import annotations


class RessonanceError(Exception):
    """Base of every error Ressonance raises on purpose."""


class ConfigError(RessonanceError):
    """The configuration is invalid; the message says which setting and why."""


class PusherError(RessonanceError):
    """A protocol error for a WebSocket peer, reported as ``pusher:error`` with ``code``.

    ``close`` is true when the connection must be closed with the same code afterwards
    (PROTOCOL.md Part B item 1: every 4000-4299 condition is fatal, 43xx never is).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def close(self) -> bool:
        return 4000 <= self.code < 4300


class SubscriptionError(RessonanceError):
    """A subscription was refused; the socket stays open (PROTOCOL.md Part B item 3)."""

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
