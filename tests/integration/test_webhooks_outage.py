"""The issue's outage drill on one real ``ressonance serve`` (docs/webhooks.md, "Delivery"): the
receiver is down for 2 minutes (connection refused for 60 s, then answering 503 for 60 s), then
up: every webhook made during the outage arrives, in order per channel, none twice, within the
5-minute retry window; ``ressonance_webhooks_total`` on /metrics counts the deliveries and the
retries. And a receiver answering 404: a dead letter at once, no retry.

The drill is long by nature (about 2 minutes 10 s: the outage itself, then the next retry of
each channel's first job, which the back-off schedules 60 s after the one before).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ressonance.models import WEBHOOK_EVENTS
from ressonance.webhooks.base import GIVE_UP_AFTER
from tests.support.receiver import Receiver, Request
from tests.support.server import RunningServer, free_port, run_server
from tests.support.webhook_checks import events_of, until, validate
from tests.support.wsclient import PusherWS, pusher

pytestmark = pytest.mark.asyncio

APP = {"id": "5001", "key": "outage-key", "secret": "outage-secret", "client_events": True}
EVENTS = [e for e in WEBHOOK_EVENTS if e != "subscription_count"]
TOKEN = "outage-admin-token-0123456789"
REFUSED_FOR = 60.0  # seconds the receiver refuses connections
FAILING_FOR = 60.0  # then seconds it answers 503
DELAY = 3.0  # channel_vacated / member_removed wait this long


def settings() -> dict[str, Any]:
    return {"admin_port": free_port(), "admin_token": TOKEN}


def app_with(url: str) -> dict[str, Any]:
    return {**APP, "webhooks": [{"url": url, "event_types": EVENTS}]}


def webhooks_total(server: RunningServer) -> Counter[tuple[str, str]]:
    """``ressonance_webhooks_total`` of /metrics: (event, outcome) -> count."""
    conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, body
    found: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "ressonance_webhooks_total":
                found[(sample.labels["event"], sample.labels["outcome"])] += int(sample.value)
    return found


def short(event: dict[str, Any]) -> str:
    """``name`` plus the user or the client event's ``i``: what the order is checked on."""
    if event["name"] == "client_event":
        return f"client_event:{json.loads(event['data'])['i']}"
    if "user_id" in event:
        return f"{event['name']}:{event['user_id']}"
    return str(event["name"])


async def client_events(client: PusherWS, channel: str, numbers: range) -> None:
    """Client events ``{"i": n}``; a ping round trip after, so the node has read them all."""
    for n in numbers:
        await client.send("client-note", {"i": n}, channel)
    assert await client.is_open()


async def while_refused(server: RunningServer) -> None:
    """Events on three channels while the receiver refuses connections."""
    async with pusher(server) as a, pusher(server) as b:
        await a.subscribe_private("private-log")
        await client_events(a, "private-log", range(10, 13))
        await a.subscribe_ok("orders")
        await a.subscribe_presence("presence-team", "u1")
        await client_events(a, "presence-team", range(0, 3))
        await b.subscribe_presence("presence-team", "u2")
        await client_events(b, "presence-team", range(3, 4))
        await a.send("pusher:unsubscribe", {"channel": "orders"})
        assert await a.is_open()
        await a.close()
        await asyncio.sleep(0.3)  # u1 leaves before u2
    await asyncio.sleep(DELAY + 1.0)  # the vacated and removed events fire


async def while_failing(server: RunningServer) -> None:
    """More events, on the same channels and a new one, while the receiver answers 503."""
    async with pusher(server) as c:
        await c.subscribe_ok("orders")
        await c.subscribe_presence("presence-team", "u3")
        await client_events(c, "presence-team", range(4, 5))
        await c.subscribe_ok("late")
        assert await c.is_open()
    await asyncio.sleep(DELAY + 1.0)


EXPECTED = {
    "orders": ["channel_occupied", "channel_vacated"] * 2,
    "presence-team": [
        "channel_occupied",
        "member_added:u1",
        "client_event:0",
        "client_event:1",
        "client_event:2",
        "member_added:u2",
        "client_event:3",
        "member_removed:u1",
        "member_removed:u2",
        "channel_vacated",
        "channel_occupied",
        "member_added:u3",
        "client_event:4",
        "member_removed:u3",
        "channel_vacated",
    ],
    "private-log": [
        "channel_occupied",
        "client_event:10",
        "client_event:11",
        "client_event:12",
        "channel_vacated",
    ],
    "late": ["channel_occupied", "channel_vacated"],
}


def answered(receiver: Receiver, status: int) -> list[Request]:
    return [r for r in receiver.requests if r.status == status]


@pytest.mark.timeout(240)
async def test_a_two_minute_outage_loses_nothing_and_keeps_the_order(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Long by nature (about 2 min 10 s): the receiver is down for 2 minutes."""
    port = receiver.port
    await receiver.close()  # down: connection refused
    with run_server(tmp_path, apps=[app_with(receiver.url)], settings=settings()) as server:
        started = time.monotonic()
        await while_refused(server)
        assert receiver.requests == []
        await asyncio.sleep(max(0.0, started + REFUSED_FOR - time.monotonic()))
        receiver.status, receiver.port = 503, port  # up, but failing
        await receiver.start()
        await while_failing(server)
        await asyncio.sleep(max(0.0, started + REFUSED_FOR + FAILING_FOR - time.monotonic()))
        receiver.status = 200
        total = sum(len(names) for names in EXPECTED.values())
        await until(lambda: len(events_of(answered(receiver, 200))) >= total, 75, "every event")
        took = time.monotonic() - started
        await asyncio.sleep(2.0)  # a duplicate would come now
        metrics = webhooks_total(server)
        assert server.process.poll() is None
    print(f"\noutage drill: {total} events delivered {took:.0f} s after the first one")
    assert took < GIVE_UP_AFTER
    delivered = answered(receiver, 200)
    got = {channel: [short(e) for e in events_of(delivered, channel)] for channel in EXPECTED}
    assert got == EXPECTED  # every event, in order per channel, none twice
    ids = [r.header("webhook-id")[0] for r in delivered]
    assert len(ids) == len(set(ids)) == total  # one event per POST, each id delivered once
    seen_ok: set[str] = set()
    for request in receiver.requests:  # a retry shares its id, never after a 200
        (hook_id,) = request.header("webhook-id")
        assert hook_id not in seen_ok, f"{hook_id} posted again after its 200"
        if request.status == 200:
            seen_ok.add(hook_id)
    failed = answered(receiver, 503)
    assert failed and {r.header("webhook-id")[0] for r in failed} <= set(ids)
    assert {r.status for r in receiver.requests} == {200, 503}
    validate(APP, receiver)
    names = Counter(e["name"] for e in events_of(delivered))
    assert {k: v for (k, o), v in metrics.items() if o == "delivered"} == names
    retried = sum(v for (_, o), v in metrics.items() if o == "retried")
    refused = 3  # at least one refused attempt on each channel of the first phase
    assert retried >= len(events_of(failed)) + refused
    assert not any(o == "dead" for (_, o) in metrics), metrics


@pytest.mark.timeout(60)
async def test_a_404_is_a_dead_letter_at_once(tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 404
    with run_server(tmp_path, apps=[app_with(receiver.url)], settings=settings()) as server:
        async with pusher(server) as client:
            await client.subscribe_ok("gone")
            await until(lambda: len(receiver.requests) == 1, 5, "one attempt")
            await asyncio.sleep(4.0)  # a retry would come after 1 s, then 2 s
            metrics = webhooks_total(server)
        database = tmp_path / f"data-{server.port}" / "ressonance.db"
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            dead = db.execute("SELECT id, app_id, job FROM webhook_dead").fetchall()
            waiting = db.execute("SELECT count(*) FROM webhook_chunks").fetchone()[0]
    assert len(receiver.requests) == 1  # no retry
    assert metrics[("channel_occupied", "dead")] == 1
    assert metrics[("channel_occupied", "retried")] == 0
    ((job_id, app_id, job),) = dead
    assert job_id == receiver.requests[0].header("webhook-id")[0]
    assert app_id == APP["id"] and "404" in job
    assert waiting == 0
    validate(APP, receiver)
