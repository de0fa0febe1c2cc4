"""Webhooks from a real ``ressonance serve`` to a receiver on 127.0.0.1 (docs/webhooks.md):
what is sent and when, checked with the Pusher Python SDK's ``validate_webhook``; retries while
the receiver is down, in order per channel; a restart while the receiver is down loses nothing.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ressonance.models import WEBHOOK_EVENTS
from tests.integration.test_admin import admin_call, admin_settings, bearer, scrape
from tests.support.receiver import Receiver
from tests.support.server import run_server
from tests.support.webhook_checks import until, validate_python
from tests.support.wsclient import open_ws

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

APP = {"id": "4001", "key": "hook-key", "secret": "hook-secret"}
EVENTS = [e for e in WEBHOOK_EVENTS if e != "subscription_count"]


def app_with(url: str, **extra: Any) -> dict[str, Any]:
    return {**APP, "webhooks": [{"url": url, "event_types": EVENTS}], **extra}


def validate(receiver: Receiver) -> None:
    """Every POST passes the Pusher Python SDK's check (key and signature of the raw body)."""
    validate_python(APP, receiver.requests)


def names(receiver: Receiver) -> list[str]:
    return [e["name"] for e in receiver.events()]


async def test_each_event_is_posted_signed_and_debounced(
    tmp_path: Path, receiver: Receiver
) -> None:
    # the operator's own webhook (configuration) may target 127.0.0.1
    with run_server(tmp_path, apps=[app_with(receiver.url)]) as server:
        async with open_ws(server.ws_url(APP["key"]), APP) as alice:
            await alice.subscribe_ok("news")
            await until(lambda: "channel_occupied" in names(receiver), 3, "channel_occupied")
            await alice.subscribe_presence("presence-room", "alice")
            await alice.send("client-typing", {"on": True}, "presence-room")
            await alice.subscribe_ok("cache-prices")
            await until(lambda: len(receiver.events()) >= 6, 3, "six events")
        await asyncio.sleep(1.0)
        assert "channel_vacated" not in names(receiver)  # waits 3 s for a comeback
        await until(lambda: "member_removed" in names(receiver), 5, "member_removed")
        await until(lambda: names(receiver).count("channel_vacated") == 3, 5, "vacated")
    events = receiver.events()
    assert {"name": "member_added", "channel": "presence-room", "user_id": "alice"} in events
    assert {"name": "cache_miss", "channel": "cache-prices"} in events
    (typing,) = [e for e in events if e["name"] == "client_event"]
    assert typing["event"] == "client-typing" and json.loads(typing["data"]) == {"on": True}
    assert typing["user_id"] == "alice" and typing["socket_id"]
    assert names(receiver).count("channel_occupied") == 3
    validate(receiver)
    ids = [r.header("webhook-id")[0] for r in receiver.requests]
    assert len(set(ids)) == len(ids)  # one id per POST


async def test_a_reload_within_three_seconds_sends_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    with run_server(tmp_path, apps=[app_with(receiver.url)]) as server:
        url = server.ws_url(APP["key"])
        async with open_ws(url, APP) as page:
            await page.subscribe_presence("presence-room", "bob")
        async with open_ws(url, APP) as reloaded:
            await reloaded.subscribe_presence("presence-room", "bob")
            await asyncio.sleep(4.0)
            assert names(receiver) == ["channel_occupied", "member_added"]


async def test_retries_while_the_receiver_is_down_keep_the_order_per_channel(
    tmp_path: Path, receiver: Receiver
) -> None:
    port = receiver.port
    await receiver.close()  # down: connection refused
    with run_server(tmp_path, apps=[app_with(receiver.url)]) as server:
        async with open_ws(server.ws_url(APP["key"]), APP) as client:
            for round_ in range(3):
                await client.subscribe_ok("orders")
                await client.send("pusher:unsubscribe", {"channel": "orders"})
                await asyncio.sleep(3.5 if round_ < 2 else 0.1)  # vacated after 3 s each
        await asyncio.sleep(2.0)
        receiver.status = 503  # up, but failing
        receiver.port = port
        await receiver.start()
        await until(lambda: len(receiver.requests) >= 1, 10, "a first attempt")
        receiver.status = 200
        await until(lambda: names(receiver).count("channel_vacated") >= 3, 40, "every event")
    delivered = [
        json.loads(r.body)["events"][0]["name"] for r in receiver.requests if r.status == 200
    ]
    assert delivered == ["channel_occupied", "channel_vacated"] * 3  # in order, none twice
    validate(receiver)


async def test_a_restart_while_the_receiver_is_down_loses_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    port = receiver.port
    await receiver.close()
    data_dir = str(tmp_path / "data")
    apps = [app_with(receiver.url)]
    with run_server(tmp_path, apps=apps, env={"RESSONANCE_DATA_DIR": data_dir}) as server:
        async with open_ws(server.ws_url(APP["key"]), APP) as client:
            await client.subscribe_ok("kept")
            await asyncio.sleep(1.5)  # one failed attempt at least
    receiver.port = port
    await receiver.start()
    with run_server(tmp_path, apps=apps, env={"RESSONANCE_DATA_DIR": data_dir}) as server:
        await until(lambda: "channel_occupied" in names(receiver), 15, "the job kept on disk")
        assert server.process.poll() is None
    assert receiver.events()[0] == {"name": "channel_occupied", "channel": "kept"}
    validate(receiver)


async def test_the_debug_console_shows_each_attempt_and_metrics_count_them(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A viewer of the app's debug console sees the webhook attempts (kind "webhook": the
    events, the URL, the outcome); ressonance_webhooks_total counts them by outcome."""
    settings = admin_settings()
    receiver.status = 503  # the first attempt fails, the next one (after 1 s) is delivered
    with run_server(tmp_path, apps=[app_with(receiver.url)], settings=settings) as server:
        path = f"/api/apps/{APP['id']}/events"
        status, _, body = await asyncio.to_thread(admin_call, server, "GET", path, bearer())
        assert status == 200
        after = json.loads(body)["next"]  # watching from now
        async with open_ws(server.ws_url(APP["key"]), APP) as client:
            await client.subscribe_ok("watched")
            await until(lambda: len(receiver.requests) >= 1, 5, "the first attempt")
            receiver.status = 200
            await until(lambda: receiver.requests[-1].status == 200, 5, "the retry")
            await asyncio.sleep(0.3)
        query = f"{path}?after={after}&wait=1"
        status, _, body = await asyncio.to_thread(admin_call, server, "GET", query, bearer())
        hooks = [e for e in json.loads(body)["events"] if e["kind"] == "webhook"]
        assert [h["message"].split(" ")[0] for h in hooks] == ["retried", "delivered"]
        assert hooks[0]["event"] == "channel_occupied" and hooks[0]["data"] == receiver.url
        assert "503" in hooks[0]["message"]
        metrics = scrape(server)
    key = 'ressonance_webhooks_total{app_id="_other",event="channel_occupied",outcome="%s"}'
    assert metrics[key % "retried"] == 1 and metrics[key % "delivered"] == 1
    assert metrics["ressonance_webhook_latency_seconds_count"] >= 1


async def test_batching_puts_the_events_of_a_short_window_in_one_post(
    tmp_path: Path, receiver: Receiver
) -> None:
    app = app_with(receiver.url, webhook_batching=True)
    with run_server(tmp_path, apps=[app]) as server:
        async with open_ws(server.ws_url(APP["key"]), APP) as client:
            for channel in ("a", "b", "c"):
                await client.subscribe_ok(channel)
            await until(lambda: len(receiver.events()) >= 3, 3, "three events")
    assert len(receiver.requests) == 1
    assert [e["channel"] for e in receiver.events()] == ["a", "b", "c"]
    validate(receiver)


@pytest.mark.parametrize("allowed", [False, True])
async def test_a_tenants_webhook_may_not_reach_a_private_address(
    tmp_path: Path, receiver: Receiver, allowed: bool
) -> None:
    """An app of the store is a tenant's: its webhook to 127.0.0.1 is refused (a dead letter
    saying why, nothing posted) unless webhooks_allow_private_targets is on."""
    settings = admin_settings()
    env = {  # no configured app, so no TOML file: the settings go by the environment
        "RESSONANCE_ADMIN_PORT": str(settings["admin_port"]),
        "RESSONANCE_ADMIN_TOKEN": settings["admin_token"],
        "RESSONANCE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": str(allowed).lower(),
    }
    with run_server(tmp_path, apps=[], settings=settings, env=env) as server:
        hook = {"url": receiver.url, "event_types": ["channel_occupied"]}
        body = json.dumps({"name": "tenant", "webhooks": [hook]}).encode()
        status, _, raw = await asyncio.to_thread(
            admin_call, server, "POST", "/api/v1/apps", bearer(), body
        )
        assert status == 201, raw
        app = json.loads(raw)
        async with open_ws(server.ws_url(app["key"]), app) as client:
            await client.subscribe_ok("tenant-channel")
            if allowed:
                await until(lambda: len(receiver.requests) == 1, 5, "the POST")
                return

            def letters() -> list[dict[str, Any]]:
                found = admin_call(server, "GET", "/api/v1/dead-letters", bearer())
                return list(json.loads(found[2])["dead_letters"])

            deadline = asyncio.get_running_loop().time() + 5
            while not (dead := await asyncio.to_thread(letters)):
                assert asyncio.get_running_loop().time() < deadline, "no dead letter"
                await asyncio.sleep(0.1)
        assert receiver.requests == []
        assert "loopback" in dead[0]["last_error"] and dead[0]["attempts"] == 1
