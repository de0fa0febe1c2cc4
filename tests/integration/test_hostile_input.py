"""Input crafted to reach an unexpected exception: it gets its documented answer, never a
traceback, a 1011 or a 500, and nothing accepted fails later per subscriber (docs/security.md
"Input validation").
"""

from __future__ import annotations

import asyncio
import http.client
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.rest import signed_query
from tests.support.server import DEFAULT_APPS, RunningServer
from tests.support.wsclient import (
    BACKGROUND,
    Closed,
    PusherWS,
    assert_alive,
    channel_auth,
    open_ws,
    pusher,
    user_auth,
)

APP = DEFAULT_APPS[0]
pytestmark = pytest.mark.timeout(90)


def tracebacks(server: RunningServer) -> int:
    return server.log().count("Traceback")


def post(server: RunningServer, path: str, body: bytes, query: str | None = None) -> int:
    """POST ``body`` as is (signed unless ``query`` is given); the status."""
    if query is None:
        query = signed_query(APP["key"], APP["secret"], "POST", path, body)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        conn.request("POST", f"{path}?{query}", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def get_status(server: RunningServer, path: str, query: str) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", f"{path}?{query}")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


async def answer(client: PusherWS, timeout: float = 2) -> dict[str, Any] | None:
    """The next frame that is not a ping or count, ``{"event": "closed", "code": n}`` after a
    close, or None after ``timeout`` seconds of silence."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                frame = await client.recv_event(timeout)
                if frame.get("event") not in BACKGROUND:
                    return frame
    except TimeoutError:
        return None
    except Closed as closed:
        return {"event": "closed", "code": closed.code}


def nested(depth: int, opener: str = "[") -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return opener * depth + "1" + closer * depth


# -- ITEM 6: deep nesting ------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("event", ["pusher:subscribe", "pusher:unsubscribe", "pusher:signin"])
@pytest.mark.parametrize("data", [nested(2500), "garbage"], ids=["deep", "garbage"])
async def test_data_string_that_is_not_json_is_4300(
    server: RunningServer, event: str, data: str
) -> None:
    """``data`` as a string that is not JSON, here nested 2,500 deep (a 5 KB frame), ten times:
    pusher:error 4300 and the socket stays open, like a frame that is not JSON (before, for the
    deep one: close 1011 and a traceback each time)."""
    before = tracebacks(server)
    outcomes = []
    for _ in range(10):
        async with pusher(server) as client:
            await client.send(event, data)
            got = await answer(client)
            code = got["data"]["code"] if got and got["event"] == "pusher:error" else got
            outcomes.append((code, await client.is_open()))
    assert outcomes == [(4300, True)] * 10, outcomes
    assert tracebacks(server) == before, server.log()[-3000:]
    await assert_alive(server)


@pytest.mark.asyncio
async def test_client_event_data_depth_limit(server: RunningServer) -> None:
    """A client frame nested up to 100 deep (``data`` up to 99) is forwarded; deeper is refused
    with 4300 (before: forwarded up to the interpreter's recursion limit)."""
    channel = "private-deep"
    before = tracebacks(server)
    outcomes: dict[int, Any] = {}
    async with pusher(server) as receiver, pusher(server) as sender:
        await receiver.subscribe_private(channel)
        await sender.subscribe_private(channel)
        for depth in (98, 99, 100, 500, 900, 990, 999):
            frame = f'{{"event":"client-x","channel":"{channel}","data":{nested(depth)}}}'
            await sender.send_raw(frame)
            got = await answer(sender, 0.5)
            forwarded = await answer(receiver, 0.5)
            code = got["data"].get("code") if got and got["event"] == "pusher:error" else got
            outcomes[depth] = (code, forwarded["event"] if forwarded else None)
    assert outcomes == {
        98: (None, "client-x"),
        99: (None, "client-x"),
        **{d: (4300, None) for d in (100, 500, 900, 990, 999)},
    }, outcomes
    assert tracebacks(server) == before, server.log()[-3000:]
    await assert_alive(server)


@pytest.mark.asyncio
async def test_deep_json_http_body_is_400(server: RunningServer) -> None:
    """A body whose ``data`` object parses but is too deep to encode again: 400, no 500."""
    path = f"/apps/{APP['id']}/events"
    before = tracebacks(server)
    statuses = {}
    for depth in range(950, 1001, 5):
        body = f'{{"name":"e","channel":"deep","data":{nested(depth)}}}'.encode()
        statuses[depth] = post(server, path, body)
    assert set(statuses.values()) <= {200, 400}, statuses
    assert tracebacks(server) == before, server.log()[-3000:]


@pytest.mark.asyncio
@pytest.mark.parametrize("depth", [101, 990])
async def test_deep_presence_user_info_is_refused(server: RunningServer, depth: int) -> None:
    """A signed channel_data whose user_info is nested deeper than 100: a subscription error
    (before: a member whose info every later subscriber, node and broker message re-encodes)."""
    channel = f"presence-deep-{depth}"
    before = tracebacks(server)
    async with pusher(server) as first:
        channel_data = f'{{"user_id":"deep","user_info":{nested(depth)}}}'
        await first.subscribe(
            channel, channel_auth(APP, first.socket_id, channel, channel_data), channel_data
        )
        got = await answer(first, 2)
        assert got is not None and got["event"] == "pusher:subscription_error", got
        async with pusher(server) as later:
            await later.subscribe_presence(channel, "later")
    assert tracebacks(server) == before, server.log()[-3000:]
    await assert_alive(server)


# -- ITEM 7: bytes that are not UTF-8 text -------------------------------------------------------
SURROGATE = b"\xed\xa0\x80"  # U+D800 encoded as if it were a character: not UTF-8


@pytest.mark.asyncio
async def test_raw_surrogate_in_data_is_400(server: RunningServer) -> None:
    before = tracebacks(server)
    body = b'{"name":"e","channel":"c","data":"x' + SURROGATE + b'"}'
    assert post(server, f"/apps/{APP['id']}/events", body) == 400
    assert tracebacks(server) == before, server.log()[-3000:]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        b'{"name":"e' + SURROGATE + b'","channel":"cache-poison","data":"{}"}',
        b'{"name":"e","channel":"cache-poison","data":{"k' + SURROGATE + b'":1}}',
        b'{"batch":[{"name":"e' + SURROGATE + b'","channel":"cache-poison","data":"{}"}]}',
        b'\xef\xbb\xbf{"name":"e","channel":"cache-poison","data":"{}"}',
        '{"name":"e","channel":"cache-poison","data":"{}"}'.encode("utf-16"),
    ],
    ids=["event-name", "data-key", "batch", "utf8-bom", "utf16"],
)
async def test_body_that_is_not_utf8_is_refused_before_the_cache(
    server: RunningServer, body: bytes
) -> None:
    """The cache channel must not keep an event that cannot be sent: 400 at publish time, and a
    new subscriber gets cache_miss and stays connected (before: 200, then a 1011 per
    subscriber for the whole cache_ttl)."""
    before = tracebacks(server)
    path = f"/apps/{APP['id']}/" + ("batch_events" if b"batch" in body else "events")
    status = post(server, path, body)
    outcomes = []
    for _ in range(3):
        async with pusher(server) as client:
            await client.subscribe("cache-poison")
            await client.expect("pusher_internal:subscription_succeeded", channel="cache-poison")
            outcomes.append(await answer(client, 1))
    assert status == 400, (status, outcomes)
    assert all(o is not None and o["event"] == "pusher:cache_miss" for o in outcomes), outcomes
    assert tracebacks(server) == before, server.log()[-3000:]


# -- ITEM 8: numbers in the query ----------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "timestamp",
    ["\u00b2", "\u0661\u0662", "9" * 5000, "1" * 30, "-1", " 1", ""],
    ids=["superscript", "arabic-indic", "5000-digits", "30-digits", "negative", "space", "empty"],
)
async def test_bad_auth_timestamp_is_401(server: RunningServer, timestamp: str) -> None:
    path = f"/apps/{APP['id']}/channels"
    query = (
        f"auth_key={APP['key']}&auth_version=1.0&auth_signature={'0' * 64}"
        f"&auth_timestamp={quote(timestamp)}"
    )
    before = tracebacks(server)
    assert get_status(server, path, query) == 401
    assert tracebacks(server) == before, server.log()[-3000:]


@pytest.mark.asyncio
async def test_non_ascii_body_md5_is_401(server: RunningServer) -> None:
    path = f"/apps/{APP['id']}/events"
    body = b'{"name":"e","channel":"c","data":"{}"}'
    # signed as if there were no body, so that the given body_md5 stays as it is
    query = signed_query(APP["key"], APP["secret"], "POST", path, b"", {"body_md5": "\u00e9"})
    before = tracebacks(server)
    assert post(server, path, body, query) == 401
    assert tracebacks(server) == before, server.log()[-3000:]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "protocol", ["\u00b2", "7" * 5000, "\u0667"], ids=["superscript", "5000-digits", "arabic-7"]
)
async def test_protocol_that_is_not_a_plain_number(server: RunningServer, protocol: str) -> None:
    """4006 for anything but ASCII digits; the error never echoes an unbounded value."""
    url = server.ws_url(APP["key"], f"protocol={quote(protocol)}&client=js&version=8.4.0")
    async with open_ws(url, APP, established=False) as client:
        code, _reason, frames = await client.expect_close(5)
    errors = [f for f in frames if f["event"] == "pusher:error"]
    assert errors, frames
    want = 4007 if protocol.isascii() else 4006
    assert code == errors[0]["data"]["code"] == want, (code, frames)
    assert len(errors[0]["data"]["message"]) < 100, len(errors[0]["data"]["message"])
    await assert_alive(server)


@pytest.mark.asyncio
async def test_signed_deep_user_data_is_refused(server: RunningServer) -> None:
    """user_data signed by the app but nested too deep: 4009, never a traceback."""
    before = tracebacks(server)
    async with pusher(server) as client:
        user_data = f'{{"id":"u","x":{nested(2500)}}}'
        await client.send(
            "pusher:signin",
            {"auth": user_auth(APP, client.socket_id, user_data), "user_data": user_data},
        )
        got = await answer(client, 2)
        assert got is not None and got["event"] == "pusher:error", got
        assert got["data"]["code"] == 4009, got
    assert tracebacks(server) == before, server.log()[-3000:]
