"""The headers of one webhook attempt (docs/webhooks.md, "What is sent").

Two signatures of the same body, so that both kinds of receiver can check it with a stock
library:

* Pusher's contract: ``X-Pusher-Key`` and ``X-Pusher-Signature``, the hex HMAC-SHA256 of the
  exact body bytes with the app's secret (checked by the Pusher SDKs' ``validate_webhook`` /
  ``webhook(req).isValid()``).
* Standard Webhooks (https://www.standardwebhooks.com/): ``webhook-id`` (the job's id, the same
  at every retry so that receivers can de-duplicate), ``webhook-timestamp`` (integer Unix
  seconds of this attempt) and ``webhook-signature``: ``v1,`` + base64 of
  HMAC-SHA256(``{id}.{timestamp}.{body}``) keyed with the app secret's UTF-8 bytes.

  A Standard Webhooks secret is ``whsec_`` + the base64 of the key bytes, so a receiver
  verifies with ``whsec_`` + base64(app secret) (:func:`receiver_secret`), e.g.
  ``standardwebhooks.Webhook("whsec_" + b64encode(secret.encode()).decode())``.

Both are signed with the pair the caller passes: the app's oldest active pair during a
rotation (:attr:`ressonance.models.App.oldest`), as Pusher does.

The webhook's own headers come after ours and can never replace them: a configured header
whose name Ressonance sets is dropped here (validation already refuses those names; this
also guards jobs read back from a queue), and so is any header that is not one clean line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from ressonance.models import WEBHOOK_RESERVED_HEADERS
from ressonance.protocol.signatures import webhook_signature
from ressonance.webhooks.base import Job

WHSEC_PREFIX = "whsec_"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110)


def standard_signature(job_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
    signed = f"{job_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def receiver_secret(secret: str) -> str:
    """The Standard Webhooks verification secret of an app secret: ``whsec_`` + base64."""
    return WHSEC_PREFIX + base64.b64encode(secret.encode()).decode()


def _allowed(name: str, value: str) -> bool:
    return (
        name.lower() not in WEBHOOK_RESERVED_HEADERS
        and _TOKEN.fullmatch(name) is not None
        and not any(c in value for c in "\r\n\0")
    )


def headers_for(job: Job, key: str, secret: str, now: float) -> list[tuple[str, str]]:
    """The signed headers of one attempt of ``job`` at Unix time ``now``, then the webhook's
    own headers (those Ressonance sets, or not one clean line, left out)."""
    timestamp = int(now)
    ours = [
        ("Content-Type", "application/json"),
        ("X-Pusher-Key", key),
        ("X-Pusher-Signature", webhook_signature(secret, job.body)),
        ("webhook-id", job.id),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-signature", standard_signature(job.id, timestamp, job.body, secret)),
    ]
    return ours + [(name, value) for name, value in job.headers if _allowed(name, value)]
