"""The WebSocket opening handshake (RFC 6455 §4.2) for ``GET /app/{key}``.

Checks the upgrade headers and builds the 101 response. permessage-deflate is never accepted:
broadcast frames are shared bytes (docs/design.md "Hot-path rules").
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qs

from ressonance.errors import HttpError
from ressonance.exchange import Request, Response
from ressonance.transport.frames import accept_key

APP_PATH = "/app/"


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A valid upgrade request: the app key, the ``protocol`` query value and the Origin."""

    key: str
    protocol: str | None
    origin: str | None
    accept: str


def is_websocket_path(path: str) -> bool:
    return path.startswith(APP_PATH)


def check(request: Request) -> Upgrade:
    """Validate an upgrade request; raises :class:`HttpError` (400/404/405/426) otherwise."""
    if request.method != "GET":
        raise HttpError(405, "WebSocket upgrades use GET")
    key = request.path[len(APP_PATH) :]
    if not key or "/" in key:
        raise HttpError(404, "Path not found: use /app/{key}")
    headers = request.headers
    if headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in {
        t.strip() for t in headers.get("connection", "").lower().split(",")
    }:
        raise HttpError(426, "This endpoint needs a WebSocket upgrade")
    if headers.get("sec-websocket-version", "").strip() != "13":
        raise HttpError(426, "Unsupported Sec-WebSocket-Version: use 13")
    ws_key = headers.get("sec-websocket-key", "").strip()
    try:
        if len(base64.b64decode(ws_key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HttpError(400, "Missing or invalid Sec-WebSocket-Key") from None
    query = parse_qs(request.query)
    protocol = query.get("protocol", [None])[0]
    return Upgrade(key, protocol, headers.get("origin"), accept_key(ws_key))


def response(upgrade: Upgrade) -> Response:
    """The ``101 Switching Protocols`` response for ``upgrade``."""
    return Response(
        101,
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", upgrade.accept),
        ],
    )


def refusal_headers(fault: HttpError) -> list[tuple[str, str]]:
    """Extra headers for a refused upgrade (RFC 6455 §4.4: tell the supported version)."""
    return [("Sec-WebSocket-Version", "13")] if fault.status == 426 else []
