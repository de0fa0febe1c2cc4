"""A :class:`~ressonance.webhooks.base.Job` as JSON text, for the queues that keep it whole (a
Redis stream entry, a dead letter): every field by name, the body in base64 so any bytes
round-trip exactly."""

from __future__ import annotations

import base64
import json
from typing import Any

from ressonance.webhooks.base import Job


def dumps(job: Job) -> str:
    """The job as one JSON object."""
    fields: dict[str, Any] = {
        "id": job.id,
        "app_id": job.app_id,
        "url": job.url,
        "order_key": job.order_key,
        "body": base64.b64encode(job.body).decode("ascii"),
        "events": list(job.events),
        "headers": [list(pair) for pair in job.headers],
        "tenant": job.tenant,
        "created_at": job.created_at,
        "attempts": job.attempts,
        "next_at": job.next_at,
        "last_error": job.last_error,
    }
    return json.dumps(fields, separators=(",", ":"))


def loads(text: str | bytes) -> Job:
    """The job of :func:`dumps`."""
    fields = json.loads(text)
    return Job(
        id=str(fields["id"]),
        app_id=str(fields["app_id"]),
        url=str(fields["url"]),
        order_key=str(fields["order_key"]),
        body=base64.b64decode(fields["body"]),
        events=tuple(str(name) for name in fields["events"]),
        headers=tuple((str(name), str(value)) for name, value in fields["headers"]),
        tenant=bool(fields["tenant"]),
        created_at=float(fields["created_at"]),
        attempts=int(fields["attempts"]),
        next_at=float(fields["next_at"]),
        last_error=str(fields["last_error"]),
    )
