"""The jobs of a chunk (docs/webhooks.md, "Delivery"): :func:`expand` turns the entries a node
recorded (:class:`~ressonance.webhooks.base.Chunk`) into the
:class:`~ressonance.webhooks.base.Job` of every webhook of the app that wants each event.

It runs on the leader when it takes a chunk, at the pace webhooks are posted, never on the hot
path. It is deterministic: the same chunk and the same apps give the same jobs, ids and bodies,
so a chunk expanded again by the next leader is posted with the same ``webhook-id``\\ s.

A job's id is ``"msg_"`` + the chunk's id (20 hex digits) + the entry's index (4) + a CRC-32 of
the webhook's URL (8; of ``url#k`` for the k-th other webhook of the app with the same URL): 32
hex digits, unique per (event, webhook). Without batching, one job per
event and webhook, ordered per ``app|url|channel``; with ``app.webhook_batching``, the events of
one chunk for one webhook go into one job of at most :data:`BATCH_MAX` events, in order,
ordered per ``app|url`` (a batch spans channels).
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable, Mapping

from ressonance.models import App, WebhookEvent
from ressonance.protocol import channels
from ressonance.protocol.messages import dumps
from ressonance.webhooks import job_json
from ressonance.webhooks.base import EVENT, JOB, Chunk, Job

BATCH_MAX = 100  # events in one batched POST

_quote = json.encoder.encode_basestring_ascii  # a JSON string, ASCII-escaped (C)


def event_json(event: WebhookEvent) -> str:
    """``event.to_json()`` as compact JSON text."""
    parts = ['{"name":', _quote(event.name), ',"channel":', _quote(event.channel)]
    if event.user_id is not None:
        parts += [',"user_id":', _quote(event.user_id)]
    if event.event is not None:
        parts += [',"event":', _quote(event.event)]
    if event.data is not None:
        parts += [',"data":', _quote(event.data)]
    if event.socket_id is not None:
        parts += [',"socket_id":', _quote(event.socket_id)]
    if event.subscription_count is not None:
        parts += [',"subscription_count":', str(int(event.subscription_count))]
    parts.append("}")
    return "".join(parts)


def body(time_ms: int, events: list[str]) -> bytes:
    """A webhook POST's body from its events' JSON texts, compact, exactly as posted."""
    return f'{{"time_ms":{time_ms},"events":[{",".join(events)}]}}'.encode()


def client_event(socket_id: str, frame: str) -> WebhookEvent:
    """The ``client_event`` webhook event of a client event's frame (as its subscribers got
    it) sent by ``socket_id``: ``data`` as a string (JSON text when the client sent an
    object), ``user_id`` on presence channels."""
    fields = json.loads(frame)
    channel = str(fields["channel"])
    data = fields.get("data")
    user_id = fields.get("user_id") if channels.kind_of(channel).presence else None
    return WebhookEvent(
        "client_event",
        channel,
        user_id=None if user_id is None else str(user_id),
        event=str(fields["event"]),
        data=data if isinstance(data, str) else dumps(data),
        socket_id=socket_id,
    )


@dataclasses.dataclass(slots=True)
class _Batch:
    position: int  # its job's place in the jobs made (set when the batch closes)
    events: list[str]
    names: list[str]


def expand(
    chunk: Chunk, apps: Mapping[str, App | None], is_tenant: Callable[[str], bool]
) -> tuple[list[Job], int]:
    """The jobs of ``chunk`` for the apps as they are now (``apps`` by id; None or missing:
    gone), in entry order, with the saved states of :attr:`Chunk.states` applied and the
    jobs that ended left out; and the number of events of apps that are gone or disabled
    (their webhooks cannot be known: dropped, counted by the caller)."""
    jobs: list[Job] = []
    gone = 0
    time_ms = int(chunk.created_at * 1000)
    batches: dict[tuple[str, int], _Batch] = {}  # (app id, webhook position) → open batch
    for index, (app_id, tag, text) in enumerate(chunk.entries()):
        if tag == JOB:
            job = dataclasses.replace(job_json.loads(text), chunk=chunk.id)
            jobs.append(job)
            continue
        app = apps.get(app_id)
        if app is None or not app.enabled:
            gone += 1
            continue
        if tag == EVENT:
            fields = json.loads(text)
            name, channel, as_json = str(fields["name"]), str(fields["channel"]), text
        else:
            event = client_event(tag, text)
            name, channel, as_json = event.name, event.channel, event_json(event)
        for position, webhook in enumerate(app.webhooks):
            if not webhook.wants(name, channel):
                continue
            if not app.webhook_batching:
                order_key = f"{app.id}|{webhook.url}|{channel}"
                encoded = body(time_ms, [as_json])
                jobs.append(
                    _job(chunk, index, app, position, order_key, encoded, (name,), is_tenant)
                )
                continue
            key = (app.id, position)
            batch = batches.get(key)
            if batch is None:  # its job takes the place of its first event
                batch = batches[key] = _Batch(len(jobs), [], [])
                order_key = f"{app.id}|{webhook.url}"
                jobs.append(_job(chunk, index, app, position, order_key, b"", (), is_tenant))
            batch.events.append(as_json)
            batch.names.append(name)
            if len(batch.events) >= BATCH_MAX:
                del batches[key]
                _fill(jobs, batch, time_ms)
    for batch in batches.values():
        _fill(jobs, batch, time_ms)
    out = []
    for job in jobs:
        state = chunk.states.get(job.id)
        if state is None:
            out.append(job)
        elif not state.ended:
            out.append(job.with_state(state))
    return out, gone


def _job(
    chunk: Chunk,
    index: int,
    app: App,
    position: int,
    order_key: str,
    encoded: bytes,
    names: tuple[str, ...],
    is_tenant: Callable[[str], bool],
) -> Job:
    webhook = app.webhooks[position]
    return Job(
        id=job_id(chunk.id, index, webhook_key(app, position)),
        app_id=app.id,
        url=webhook.url,
        order_key=order_key,
        body=encoded,
        events=names,
        headers=webhook.headers,
        tenant=is_tenant(app.id),
        created_at=chunk.created_at,
        chunk=chunk.id,
    )


def _fill(jobs: list[Job], batch: _Batch, time_ms: int) -> None:
    """The closed ``batch``'s body and event names into its job."""
    jobs[batch.position] = dataclasses.replace(
        jobs[batch.position], body=body(time_ms, batch.events), events=tuple(batch.names)
    )


def webhook_key(app: App, position: int) -> str:
    """What tells the app's webhook at ``position`` from its others in a job id: its URL, and
    ``#k`` when it is the k-th (from 1) webhook of the app with the same URL."""
    url = app.webhooks[position].url
    k = sum(1 for w in app.webhooks[:position] if w.url == url)
    return f"{url}#{k}" if k else url


def job_id(chunk_id: str, index: int, key: str) -> str:
    """The id (and ``webhook-id``) of the job of entry ``index`` of a chunk for the webhook
    ``key`` (:func:`webhook_key`)."""
    return f"msg_{chunk_id}{index:04x}{zlib.crc32(key.encode()):08x}"
