"""Authentication of HTTP API requests (docs/protocol.md, "HTTP API authentication").

``auth_key`` must be one of the app's active keys (two during a rotation), signing with its own
secret; ``auth_timestamp`` within 600 s of the server clock,
``body_md5`` must match every non-empty body, and ``auth_signature`` is compared in constant time.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from ressonance.errors import HttpError
from ressonance.models import App
from ressonance.node.replay import Claim
from ressonance.protocol import signatures

TIMESTAMP_WINDOW = 600
MAX_DIGITS = 20  # an auth_timestamp longer than this is refused (no clock is that far off)


def parse_query(query: str) -> list[tuple[str, str]]:
    """Query pairs, unescaped (the form the SDKs sign)."""
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise HttpError(400, "Malformed query string") from None


def _number(text: str) -> int | None:
    """A query value of ASCII digits as an int, else None. ``str.isdigit`` alone accepts ``²``
    and other digits ``int`` refuses, and ``int`` refuses more than 4,300 digits."""
    if not text.isascii() or not text.isdigit() or len(text) > MAX_DIGITS:
        return None
    return int(text)


def authenticate(
    app: App, method: str, path: str, params: list[tuple[str, str]], body: bytes, now: float
) -> tuple[str, int]:
    """Raise :class:`HttpError` 401 with the reason unless the request is signed by ``app``;
    returns the verified ``auth_signature`` (lower-case hex) and ``auth_timestamp``."""
    query = dict(params)
    secret = app.secret_for(query.get("auth_key"))
    if secret is None:
        raise HttpError(401, "Unknown or missing auth_key")
    signature = query.get("auth_signature")
    if not signature:
        raise HttpError(401, "Missing auth_signature")
    version = query.get("auth_version", "1.0")
    if version != "1.0":
        raise HttpError(401, "Unsupported auth_version (expected 1.0)")
    timestamp = _number(query.get("auth_timestamp", ""))
    if timestamp is None:
        raise HttpError(401, "Missing or invalid auth_timestamp")
    if abs(now - timestamp) > TIMESTAMP_WINDOW:
        raise HttpError(
            401,
            f"Timestamp expired: auth_timestamp must be within {TIMESTAMP_WINDOW} s "
            "of the server time (check the clock)",
        )
    if body:
        given_md5 = query.get("body_md5")
        if given_md5 is None:
            raise HttpError(401, "Missing body_md5 for a request with a body")
        # bytes: compare_digest raises TypeError on a str that is not ASCII
        if not hmac.compare_digest(signatures.body_md5(body).encode(), given_md5.lower().encode()):
            raise HttpError(401, "body_md5 does not match the body")
    expected = signatures.api_signature(secret, method, path, params)
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise HttpError(401, "Invalid signature: check the app secret and the signed string")
    return expected, timestamp


def refuse_replay(claim: Claim) -> None:
    """401 for a signature the replay guard has seen, or cannot check (docs/security.md)."""
    if claim is Claim.REPLAYED:
        raise HttpError(
            401,
            "Replayed request: this auth_signature was already used (replay_guard is on; "
            "each request needs its own signature)",
        )
    if claim is Claim.TOO_OLD:
        raise HttpError(
            401,
            "auth_timestamp is older than the replay guard can check while it is full "
            "(replay_guard_size): sign with the current time",
        )
