"""What a new connection is checked for and given: the ``protocol`` version and a socket id."""

from __future__ import annotations

import secrets

from ressonance.errors import PusherError
from ressonance.protocol import codes


def new_socket_id() -> str:
    """``\\d+.\\d+`` as the server SDKs require (docs/protocol.md, "Socket ids")."""
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}"


def check_protocol(protocol: str | None) -> None:
    """A given ``protocol`` must be 7 (4007); a missing one is accepted (docs/protocol.md,
    "Protocol version")."""
    if protocol is None or protocol == "7":
        return
    if not protocol.isascii() or not protocol.isdigit():  # isdigit alone accepts "²"
        raise PusherError(codes.INVALID_VERSION, "Invalid protocol version")
    shown = protocol if len(protocol) <= 10 else protocol[:10] + "..."  # never echo 16 KB
    raise PusherError(codes.UNSUPPORTED_PROTOCOL, f"Unsupported protocol version {shown}")
