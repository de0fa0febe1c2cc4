"""HMAC-SHA256 signatures of the Pusher protocol (docs/protocol.md, "Signatures").

Every comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def sign(secret: str, message: str) -> str:
    """Hex HMAC-SHA256 of ``message`` with ``secret``."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def channel_auth(
    key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """The ``auth`` value a client sends to subscribe to a private or presence channel."""
    message = (
        f"{socket_id}:{channel}"
        if channel_data is None
        else f"{socket_id}:{channel}:{channel_data}"
    )
    return f"{key}:{sign(secret, message)}"


def user_auth(key: str, secret: str, socket_id: str, user_data: str) -> str:
    """The ``auth`` value of ``pusher:signin`` for ``user_data`` (the exact JSON string sent)."""
    return f"{key}:{sign(secret, f'{socket_id}::user::{user_data}')}"


def verify(expected: str, given: object) -> bool:
    """Constant-time check that a client's ``auth`` string equals the expected one."""
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())


def body_md5(body: bytes) -> str:
    """Hex MD5 of an HTTP API request body, as sent in ``body_md5``."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def api_string_to_sign(method: str, path: str, params: Iterable[tuple[str, str]]) -> str:
    """``METHOD\\nPATH\\nsorted_query``: keys lower-cased and sorted, values not escaped,
    ``auth_signature`` left out (docs/protocol.md, "HTTP API authentication")."""
    pairs = sorted((k.lower(), v) for k, v in params if k.lower() != "auth_signature")
    query = "&".join(f"{k}={v}" for k, v in pairs)
    return f"{method.upper()}\n{path}\n{query}"


def api_signature(secret: str, method: str, path: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``auth_signature`` of an HTTP API request."""
    return sign(secret, api_string_to_sign(method, path, params))


def webhook_signature(secret: str, body: bytes) -> str:
    """``X-Pusher-Signature``: hex HMAC-SHA256 of the exact body bytes posted."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
