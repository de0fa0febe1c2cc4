"""Managing webhooks through the management API (docs/webhooks.md, "Managing webhooks") of a
real ``ressonance serve``: a receiver answering 404 makes a dead letter, listed newest first
with its header names but never their values; replayed once the receiver is fixed, it is
delivered with the same ``webhook-id``; the admin token (and the dashboard cookie's Origin)
guard the new routes; a queue that cannot be reached answers 503."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from ressonance.errors import HttpError
from ressonance.scaling.redis import client as redis_client
from ressonance.webhooks.letters import DeadLetterBook
from ressonance.webhooks.queue_redis import RedisQueue
from tests.support.receiver import Receiver
from tests.support.server import RunningServer, free_port, run_server
from tests.support.wsclient import open_ws

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]
TOKEN = "Hook-Admin-Token-0123456789abcdef"
HEADER_VALUE = "Bearer receiver-token-do-not-show"
APP = {"id": "4101", "key": "mgmt-hook-key", "secret": "mgmt-hook-secret"}
LETTERS = "/api/v1/dead-letters"


def call(
    server: RunningServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = TOKEN,
) -> tuple[int, Any]:
    """(status, parsed JSON or raw bytes); blocking: run it in a thread."""
    sent = {"Authorization": f"Bearer {token}"} if token is not None else {}
    sent.update(headers or {})
    assert server.admin_port is not None
    conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        data = response.read()
        kind = response.getheader("Content-Type") or ""
    finally:
        conn.close()
    assert b"Traceback" not in data
    return response.status, json.loads(data) if kind.startswith("application/json") else data


async def acall(server: RunningServer, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    return await asyncio.to_thread(call, server, method, path, **kw)


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def letters_of(server: RunningServer, query: str = "") -> list[dict[str, Any]]:
    status, body = await acall(server, "GET", LETTERS + query)
    assert status == 200, body
    return list(body["dead_letters"])


@pytest.fixture
def hooked(tmp_path: Path, receiver: Receiver) -> Iterator[RunningServer]:
    """A server whose app posts channel_occupied to ``receiver`` with a secret header."""
    webhook = {
        "url": receiver.url,
        "event_types": ["channel_occupied"],
        "headers": {"Authorization": HEADER_VALUE},
    }
    settings = {"admin_port": free_port(), "admin_token": TOKEN}
    with run_server(tmp_path, apps=[{**APP, "webhooks": [webhook]}], settings=settings) as srv:
        yield srv
    log = srv.log()
    assert "Traceback" not in log and TOKEN not in log and HEADER_VALUE not in log


async def occupy(server: RunningServer, channel: str) -> None:
    async with open_ws(server.ws_url(APP["key"]), APP) as ws:
        await ws.subscribe_ok(channel)


async def test_a_refused_post_is_a_dead_letter_and_a_replay_delivers_it(
    hooked: RunningServer, receiver: Receiver
) -> None:
    receiver.status = 404  # a final answer: given up at once
    await occupy(hooked, "first")
    await until(lambda: receiver.requests, 10, "the first POST")

    async def listed(count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while True:
            found = await letters_of(hooked, f"?app_id={APP['id']}")
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"{count} dead letters not listed"
            await asyncio.sleep(0.1)

    (first,) = await listed(1)
    await occupy(hooked, "second")
    newest, oldest = await listed(2)
    assert oldest == first and newest["dead_at"] >= first["dead_at"]
    assert newest["app_id"] == APP["id"] and newest["url"] == receiver.url
    assert newest["events"] == ["channel_occupied"] and newest["attempts"] >= 1
    assert "404" in newest["last_error"] and newest["created_at"] <= newest["dead_at"]
    assert newest["headers"] == ["Authorization"]  # the name, never the value
    status, raw = await acall(hooked, "GET", LETTERS + "?limit=1")
    assert status == 200 and HEADER_VALUE not in json.dumps(raw)
    assert [x["id"] for x in raw["dead_letters"]] == [newest["id"]]
    assert await letters_of(hooked, "?app_id=another-app") == []
    posted = {r.header("webhook-id")[0] for r in receiver.requests}
    assert {first["id"], newest["id"]} <= posted

    receiver.status = 200  # the receiver is fixed
    before = len(receiver.requests)
    status, body = await acall(hooked, "POST", f"{LETTERS}/{first['id']}/replay")
    assert (status, body) == (200, {"replayed": first["id"]})
    replayed = await until(
        lambda: [r for r in receiver.requests[before:] if r.status == 200], 10, "the replay"
    )
    assert replayed[0].header("webhook-id") == [first["id"]]
    assert json.loads(replayed[0].body)["events"][0]["channel"] == "first"
    assert [x["id"] for x in await letters_of(hooked)] == [newest["id"]]
    status, error = await acall(hooked, "POST", f"{LETTERS}/{first['id']}/replay")
    assert status == 404 and error["code"] == 404 and error["error"]


async def test_bad_queries_and_methods(hooked: RunningServer) -> None:
    for query, field in (("?limit=0", "limit"), ("?limit=x", "limit"), ("?limit=1001", "limit")):
        status, error = await acall(hooked, "GET", LETTERS + query)
        assert (status, error["code"], error["field"]) == (400, 400, field), query
    status, error = await acall(hooked, "GET", LETTERS + "?secret=1")
    assert (status, error["field"]) == (400, "secret")
    status, error = await acall(hooked, "POST", LETTERS)
    assert (status, error["code"]) == (405, 405)
    status, error = await acall(hooked, "GET", f"{LETTERS}/msg_nope/replay")
    assert (status, error["code"]) == (405, 405)
    status, error = await acall(hooked, "POST", f"{LETTERS}/msg_nope/replay")
    assert (status, error["code"]) == (404, 404)


async def test_the_new_routes_want_the_token_and_the_dashboards_origin(
    hooked: RunningServer,
) -> None:
    routes = [("GET", LETTERS), ("GET", LETTERS + "?app_id=4101"), ("POST", LETTERS + "/x/replay")]
    for token in (None, "", "wrong", TOKEN[:-1], TOKEN.lower()):
        for method, path in routes:
            status, error = await acall(hooked, method, path, token=token)
            assert (status, error["code"]) == (401, 401), (token, path)
            assert TOKEN not in json.dumps(error)
    form = urlencode({"token": TOKEN}).encode()
    status, _ = await acall(
        hooked,
        "POST",
        "/login",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        token=None,
    )
    assert status == 303
    # the session cookie itself (http.client does not keep it): log in again to read it
    assert hooked.admin_port is not None
    conn = http.client.HTTPConnection("127.0.0.1", hooked.admin_port, timeout=10)
    try:
        conn.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        cookie = (response.getheader("Set-Cookie") or "").split(";")[0]
    finally:
        conn.close()
    assert cookie.startswith("ressonance_admin=")
    own = f"http://127.0.0.1:{hooked.admin_port}"
    replay = f"{LETTERS}/msg_x/replay"
    for origin in (None, "http://evil.example", "null", f"{own}.evil.example"):
        headers = {"Cookie": cookie} | ({"Origin": origin} if origin else {})
        status, error = await acall(hooked, "POST", replay, headers=headers, token=None)
        assert (status, error["code"]) == (403, 403), origin
    forged = {"Cookie": "ressonance_admin=forged", "Origin": own}
    status, _ = await acall(hooked, "POST", replay, headers=forged, token=None)
    assert status == 401
    status, body = await acall(hooked, "GET", LETTERS, headers={"Cookie": cookie}, token=None)
    assert status == 200 and body == {"dead_letters": []}
    status, _ = await acall(hooked, "POST", replay, headers={"Cookie": cookie, "Origin": own})
    assert status == 404  # through: no such dead letter


async def test_a_queue_that_cannot_be_reached_is_503() -> None:
    # a real RedisQueue on a port nobody listens on: its errors become storage Unavailable
    queue = RedisQueue(redis_client(f"redis://127.0.0.1:{free_port()}"), "t", "node-1")
    book = DeadLetterBook(queue)
    try:
        for attempt in (book.list("4101", 10), book.replay("msg_x")):
            with pytest.raises(HttpError) as caught:
                await asyncio.wait_for(attempt, 20)
            assert caught.value.status == 503
            assert "127.0.0.1" not in caught.value.message  # nothing of the internals
    finally:
        await queue.close()
