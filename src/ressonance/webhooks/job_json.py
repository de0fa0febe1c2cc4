"""A :class:`~ressonance.webhooks.base.Job` as JSON text, for where a job is kept whole (a dead
letter, and the chunk that replays it): every field by name, the body in base64 so any bytes
round-trip exactly."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from typing import Any

from ressonance.webhooks.base import JOB, Chunk, Job


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
        "first_at": job.first_at,
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
        first_at=float(fields.get("first_at", 0.0)),
    )


def replay_chunk(job: Job, now: float) -> Chunk:
    """The chunk that replays a dead letter's ``job``: one entry, the job whole, with its id
    and body, its attempts reset and ``created_at = now``."""
    fresh = dataclasses.replace(
        job, attempts=0, next_at=0.0, last_error="", first_at=0.0, created_at=now, chunk=""
    )
    chunk_id = secrets.token_hex(6) + "00000001"  # a writer of its own
    return Chunk.of(chunk_id, now, [(job.app_id, JOB, dumps(fresh))])


def chunk_job(chunk: Chunk) -> Job:
    """The job a :func:`replay_chunk` carries."""
    return loads(chunk.texts)
