"""The HTTP exchange: :class:`Request` in, :class:`Response` out.

Neutral ground between the transport, which parses requests off a socket and writes responses
back (``transport/``), and the handlers that answer them (``http/``): both import this module,
neither imports the other. A listener serves any :data:`RequestHandler`, so the Pusher API and
the admin endpoints are two handlers on two listeners, not two servers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Request:
    """One complete HTTP/1.1 request; the body is de-chunked, header names are lower case
    (repeated headers joined with ``", "``)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    keep_alive: bool = True
    upgrade: bool = False


@dataclass(slots=True)
class Response:
    """What a handler answers; the transport adds Content-Length and Connection."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


RequestHandler = Callable[[Request], Awaitable[Response]]
"""Answers one request. An exception escaping it is logged and answered 500 by the transport."""
