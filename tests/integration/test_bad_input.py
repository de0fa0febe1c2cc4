"""Every kind of bad input gets its documented answer, and the server keeps serving.

Each test asserts the outcome that docs/protocol.md gives ("Decisions" where the servers disagree)
and then that a fresh connection and ``GET /health`` still work and nothing was logged as a
traceback.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.rest import Rest
from tests.support.server import DEFAULT_APPS, RunningServer, run_server
from tests.support.wsclient import (
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Closed,
    PusherWS,
    RawConn,
    assert_alive,
    channel_auth,
    encode_frame,
    open_ws,
    pusher,
    upgrade_request,
    user_auth,
)

APP, LIMITED, DISABLED = DEFAULT_APPS
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def rest(server: RunningServer) -> Iterator[Rest]:
    client = Rest(server.host, server.port, APP)
    yield client
    client.close()


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text


async def error_outcome(client: PusherWS, timeout: float = 3) -> tuple[str, int | None]:
    """The answer to a frame the server cannot use: ``("error", code)`` for a ``pusher:error`` on a
    socket that stays usable, ``("closed", code)`` for a close, ``("ignored", None)`` if nothing
    came back and the socket still answers a ping.

    Never 1011 (internal error), never a traceback in the text, a 4xxx code on ``pusher:error``,
    never a 43xx close code (docs/protocol.md, "Error codes").
    """
    try:
        frame = await client.recv_event(timeout)
    except TimeoutError:
        assert await client.is_open(), "no answer and the socket no longer answers pings"
        return "ignored", None
    except Closed as closed:
        assert closed.code is not None and 4000 <= closed.code < 4300, closed
        no_traceback(closed.reason)
        return "closed", closed.code
    if frame["event"] == "pusher:pong":  # a ping the test sent
        return "ignored", None
    assert frame["event"] == "pusher:error", frame
    data = frame["data"]
    assert isinstance(data, dict) and isinstance(data.get("code"), int), frame
    assert 4000 <= data["code"] < 4400, frame
    no_traceback(str(data.get("message")))
    if data["code"] < 4300:
        # a fatal code must be followed by a close with the same code ("Error codes") ...
        try:
            extra = await client.recv_event(3)
        except Closed as closed:
            assert closed.code == data["code"], (frame, closed)
            return "closed", closed.code
        raise AssertionError(f"pusher:error {data['code']} without close; then got {extra}")
    assert await client.is_open(), "pusher:error 43xx must leave the socket open"
    return "error", data["code"]


# -- frames that are not Pusher messages --------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "raw",
    ["{not json", "", "   ", '{"event": "pusher:ping", "data": ', "\x00"],
    ids=["garbage", "empty", "blank", "truncated", "nul"],
)
async def test_malformed_json_frame(server: RunningServer, raw: str) -> None:
    async with pusher(server) as client:
        await client.send_raw(raw)
        outcome, code = await error_outcome(client)
        # docs/protocol.md "Messages", "Error codes": pusher:error 4300, the socket stays open
        assert code != 4200, "4200 means 'reconnect now', not 'bad message' (docs: Error codes)"
        assert (outcome, code) == ("error", 4300)
    await assert_alive(server)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "raw",
    ['{"data": {}}', '{"event": null}', '{"event": 5}', "[]", '"pusher:ping"', "42", "null"],
    ids=["no-event", "null-event", "number-event", "array", "string", "number", "null"],
)
async def test_json_without_event(server: RunningServer, raw: str) -> None:
    async with pusher(server) as client:
        await client.send_raw(raw)
        outcome, code = await error_outcome(client)
        assert (outcome, code) == ("error", 4300)
    await assert_alive(server)


@pytest.mark.asyncio
async def test_binary_frame(server: RunningServer) -> None:
    """Binary frames are not part of the protocol (docs/protocol.md, "Frames and encoding"). The
    Pusher docs allow a close 1003 or a pusher:error; Ressonance closes with 1003
    (docs/protocol.md "Close codes")."""
    async with pusher(server) as client:
        await client.send_raw(b'{"event":"pusher:ping","data":{}}')
        code, _reason, frames = await client.expect_close(3)
        assert code == 1003, (code, frames)
    await assert_alive(server)


@pytest.mark.asyncio
async def test_message_over_max_message_kb_closes_1009(server: RunningServer) -> None:
    """max_message_kb (default 100): a bigger message is closed with 1009 (settings-draft)."""
    async with pusher(server) as client:
        big = json.dumps({"event": "pusher:ping", "data": {"pad": "x" * (101 * 1024)}})
        await client.send_raw(big)
        code, _reason, frames = await client.expect_close(5)
        assert code == 1009, (code, frames)
    await assert_alive(server)


@pytest.mark.asyncio
async def test_message_just_under_max_message_kb_is_served(server: RunningServer) -> None:
    async with pusher(server) as client:
        await client.send("pusher:ping", {"pad": "x" * (90 * 1024)})
        await client.expect("pusher:pong")
    await assert_alive(server)


async def raw_established(server: RunningServer, key: str = APP["key"]) -> RawConn:
    conn = await RawConn.open(server.host, server.port)
    status = await conn.handshake(server.host, server.port, f"/app/{key}?protocol=7")
    assert status == 101
    opcode, payload = await conn.read_frame()
    assert opcode == OP_TEXT and b"pusher:connection_established" in payload, payload
    return conn


@pytest.mark.asyncio
async def test_fragmented_message_over_the_limit_closes_1009(server: RunningServer) -> None:
    """The limit is on the reassembled message, not on one frame."""
    conn = await raw_established(server)
    try:
        chunk = b"x" * (40 * 1024)
        await conn.write(
            encode_frame(OP_TEXT, b'{"event":"pusher:ping","data":"' + chunk, fin=False)
        )
        await conn.write(encode_frame(OP_CONT, chunk, fin=False))
        await conn.write(encode_frame(OP_CONT, chunk + b'"}', fin=True))
        code, _reason, _ = await conn.read_until_close()
        assert code == 1009
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_fragmented_message_is_reassembled(server: RunningServer) -> None:
    conn = await raw_established(server)
    try:
        await conn.write(encode_frame(OP_TEXT, b'{"event":"pusher:', fin=False))
        await conn.write(encode_frame(OP_PING, b"mid"))  # control frames may interleave
        await conn.write(encode_frame(OP_CONT, b'ping","data":{}}', fin=True))
        frames = [await conn.read_frame(), await conn.read_frame()]
        assert (OP_PONG, b"mid") in frames, frames
        texts = [json.loads(p) for op, p in frames if op == OP_TEXT]
        assert [t["event"] for t in texts] == ["pusher:pong"], frames
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_invalid_utf8_text_frame_closes_1007(server: RunningServer) -> None:
    conn = await raw_established(server)
    try:
        await conn.send_frame(OP_TEXT, b'{"event":"pusher:ping","data":"\xff\xfe\xc3"}')
        code, _reason, _ = await conn.read_until_close()
        assert code == 1007
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_unmasked_client_frame_closes_1002(server: RunningServer) -> None:
    """RFC 6455 §5.1: a server must close on an unmasked client frame (1002)."""
    conn = await raw_established(server)
    try:
        await conn.write(encode_frame(OP_TEXT, b'{"event":"pusher:ping","data":{}}', mask=False))
        code, _reason, _ = await conn.read_until_close()
        assert code == 1002
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_reserved_opcode_closes_1002(server: RunningServer) -> None:
    conn = await raw_established(server)
    try:
        await conn.send_frame(0x3, b"x")
        code, _reason, _ = await conn.read_until_close()
        assert code == 1002
    finally:
        await conn.close()
    await assert_alive(server)


# -- Pusher events that make no sense --------------------------------------------------------------
@pytest.mark.asyncio
async def test_unknown_pusher_event_keeps_the_socket(server: RunningServer) -> None:
    async with pusher(server) as client:
        await client.send("pusher:does_not_exist", {"x": 1})
        assert await error_outcome(client) == ("error", 4300)
        await client.send("pusher_internal:subscription_succeeded", {}, channel="x")
        assert await error_outcome(client) == ("error", 4300)
        await client.send("not-client-and-not-pusher", {}, channel="x")
        assert await error_outcome(client) == ("error", 4300)
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_subscribing_twice_delivers_once(server: RunningServer, rest: Rest) -> None:
    async with pusher(server) as client:
        await client.subscribe_ok("twice")
        await client.subscribe("twice")
        # docs/protocol.md: answered with subscription_succeeded again, nothing changes
        await client.expect("pusher_internal:subscription_succeeded", 2, "twice")
        status, _ = await asyncio.to_thread(rest.trigger, "twice", "once", "{}")
        assert status == 200
        await client.expect("once", channel="twice")
        await client.expect_nothing(0.5, event="once")
        # one unsubscribe leaves it (the subscription is not counted twice)
        await client.send("pusher:unsubscribe", {"channel": "twice"})
        await asyncio.sleep(0.2)
        status, info = await asyncio.to_thread(rest.channel_info, "twice")
        assert status == 200 and info["occupied"] is False, info
    await assert_alive(server)


@pytest.mark.asyncio
async def test_subscribing_twice_to_presence(server: RunningServer) -> None:
    async with pusher(server) as client:
        await client.subscribe_presence("presence-twice", "u1")
        channel_data = json.dumps({"user_id": "u1"})
        await client.subscribe(
            "presence-twice",
            channel_auth(APP, client.socket_id, "presence-twice", channel_data),
            channel_data,
        )
        frame = await client.expect("pusher_internal:subscription_succeeded", 2, "presence-twice")
        assert frame["data"]["presence"]["count"] == 1, frame
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "data",
    [{"channel": "never-subscribed"}, {"channel": "private-never"}, {}, "garbage", None, 7],
    ids=["public", "private", "no-channel", "string", "null", "number"],
)
async def test_unsubscribe_from_a_channel_never_subscribed(
    server: RunningServer, data: Any
) -> None:
    async with pusher(server) as client:
        await client.send_raw(json.dumps({"event": "pusher:unsubscribe", "data": data}))
        outcome, code = await error_outcome(client)
        if isinstance(data, dict) and data.get("channel"):
            assert outcome == "ignored", (outcome, code)
        else:
            assert outcome in ("ignored", "error"), (outcome, code)
    await assert_alive(server)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "frame",
    [
        {"event": "pusher:subscribe"},
        {"event": "pusher:subscribe", "data": "garbage"},
        {"event": "pusher:subscribe", "data": 42},
        {"event": "pusher:subscribe", "data": None},
        {"event": "pusher:subscribe", "data": []},
        {"event": "pusher:subscribe", "data": {}},
        {"event": "pusher:subscribe", "data": {"channel": 5}},
        {"event": "pusher:subscribe", "data": {"channel": None}},
        {"event": "pusher:subscribe", "data": {"channel": ["a"]}},
        {"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": 5}},
        {
            "event": "pusher:subscribe",
            "data": {"channel": "presence-x", "auth": "k:s", "channel_data": 5},
        },
    ],
    ids=[
        "missing",
        "string",
        "number",
        "null",
        "array",
        "empty",
        "number-channel",
        "null-channel",
        "list-channel",
        "number-auth",
        "number-channel-data",
    ],
)
async def test_subscribe_with_garbage_data(server: RunningServer, frame: dict[str, Any]) -> None:
    async with pusher(server) as client:
        await client.send_raw(json.dumps(frame))
        try:
            answer = await client.recv_event(2)
        except TimeoutError:
            answer = None
        except Closed as closed:
            assert closed.code is not None and 4000 <= closed.code < 4300, closed
            no_traceback(closed.reason)
            answer = {"event": "closed"}
        if answer is not None and answer["event"] != "closed":
            assert answer["event"] in ("pusher:error", "pusher:subscription_error"), answer
            assert answer["event"] != "pusher_internal:subscription_succeeded"
            no_traceback(json.dumps(answer))
            if answer["event"] == "pusher:error":
                assert 4000 <= answer["data"]["code"] < 4400, answer
            # the socket keeps working after a rejected subscribe
            assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_subscribe_data_as_json_string_is_accepted(server: RunningServer) -> None:
    """Clients may double-encode ``data`` (docs/protocol.md, "Frames and encoding")."""
    async with pusher(server) as client:
        await client.send("pusher:subscribe", json.dumps({"channel": "double-encoded"}))
        await client.expect("pusher_internal:subscription_succeeded", channel="double-encoded")
    await assert_alive(server)


def assert_subscription_error(frame: dict[str, Any], channel: str, **want: Any) -> None:
    assert frame["event"] == "pusher:subscription_error", frame
    assert frame.get("channel") == channel, frame
    data = frame["data"]
    assert isinstance(data, dict), frame
    assert isinstance(data.get("type"), str) and "status" in data, frame
    no_traceback(json.dumps(data))
    for key, value in want.items():
        assert data.get(key) == value, (key, frame)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "channel_data",
    [
        "not json",
        "{",
        json.dumps({"user_info": {"name": "x"}}),
        json.dumps({"user_id": None}),
        json.dumps({"user_id": ""}),
        json.dumps({"user_id": {"a": 1}}),
        json.dumps({"user_id": "x" * 129}),
        json.dumps({"user_id": "big", "user_info": {"pad": "x" * 1100}}),
        json.dumps(["user_id"]),
        json.dumps("u1"),
    ],
    ids=[
        "not-json",
        "truncated",
        "no-user-id",
        "null-user-id",
        "empty-user-id",
        "object-user-id",
        "user-id-129",
        "user-info-over-1kb",
        "array",
        "string",
    ],
)
async def test_presence_with_bad_channel_data(server: RunningServer, channel_data: str) -> None:
    channel = "presence-bad-data"
    async with pusher(server) as client:
        # a correct signature over the bad channel_data: only the data itself is wrong
        auth = channel_auth(APP, client.socket_id, channel, channel_data)
        await client.subscribe(channel, auth, channel_data)
        assert_subscription_error(await client.expect("pusher:subscription_error"), channel)
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_presence_without_channel_data(server: RunningServer) -> None:
    channel = "presence-no-data"
    async with pusher(server) as client:
        await client.subscribe(channel, channel_auth(APP, client.socket_id, channel))
        assert_subscription_error(await client.expect("pusher:subscription_error"), channel)
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_presence_with_numeric_user_id_is_accepted(server: RunningServer) -> None:
    """The Pusher docs' own presence example uses ``"user_id": 10`` (docs/protocol.md,
    "Signature test vectors")."""
    channel = "presence-numeric"
    async with pusher(server) as client:
        channel_data = json.dumps({"user_id": 10, "user_info": {"name": "Mr. Pusher"}})
        await client.subscribe(
            channel, channel_auth(APP, client.socket_id, channel, channel_data), channel_data
        )
        frame = await client.expect("pusher_internal:subscription_succeeded", channel=channel)
        # docs/protocol.md "Presence": a number is accepted and always sent as a string
        assert frame["data"]["presence"]["ids"] == ["10"], frame
        assert frame["data"]["presence"]["hash"] == {"10": {"name": "Mr. Pusher"}}, frame
    await assert_alive(server)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "auth",
    ["", "garbage", "test-key:", "test-key:" + "0" * 64, "other-key:" + "0" * 64],
    ids=["empty", "no-colon", "no-signature", "wrong-signature", "wrong-key"],
)
async def test_bad_private_auth_is_a_subscription_error(server: RunningServer, auth: str) -> None:
    """docs/protocol.md, "Subscription errors": AuthError, status 401, the socket stays open."""
    async with pusher(server) as client:
        await client.subscribe("private-guarded", auth)
        frame = await client.expect("pusher:subscription_error")
        assert_subscription_error(frame, "private-guarded", type="AuthError", status=401)
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_auth_for_another_socket_is_rejected(server: RunningServer) -> None:
    async with pusher(server) as client:
        await client.subscribe("private-guarded", channel_auth(APP, "1.1", "private-guarded"))
        frame = await client.expect("pusher:subscription_error")
        assert_subscription_error(frame, "private-guarded", type="AuthError", status=401)
    await assert_alive(server)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "channel",
    [
        "x" * 201,
        "private-" + "x" * 193,
        "has space",
        "slash/name",
        "émoji-ü",
        "star*",
        "#not-a-user-channel",
        "colon:name",
    ],
    ids=["201-chars", "private-201", "space", "slash", "non-ascii", "star", "hash", "colon"],
)
async def test_invalid_channel_name(server: RunningServer, channel: str) -> None:
    """InvalidChannel, status 4009, the socket stays open (docs/protocol.md, "Subscription
    errors")."""
    async with pusher(server) as client:
        auth = channel_auth(APP, client.socket_id, channel)
        await client.subscribe(channel, auth if channel.startswith("private-") else None)
        frame = await client.expect("pusher:subscription_error")
        assert_subscription_error(frame, channel, type="InvalidChannel", status=4009)
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_200_char_channel_name_is_accepted(server: RunningServer) -> None:
    channel = "a-" + "x=@,.;_" * 28  # 2 + 196 = 198 chars of every allowed punctuation
    channel += "Z" * (200 - len(channel))
    assert len(channel) == 200
    async with pusher(server) as client:
        await client.subscribe_ok(channel)
    await assert_alive(server)


@pytest.mark.asyncio
async def test_server_to_user_channel_needs_signin(server: RunningServer, rest: Rest) -> None:
    """``#server-to-user-{id}`` only for the user the socket signed in as (docs/protocol.md,
    "Channel kinds and names")."""
    async with pusher(server) as client:
        await client.subscribe("#server-to-user-x")
        frame = await client.recv_event(3)
        assert frame["event"] in ("pusher:subscription_error", "pusher:error"), frame
        assert frame["event"] != "pusher_internal:subscription_succeeded"
        status, _ = await asyncio.to_thread(rest.trigger, "#server-to-user-x", "secret", "{}")
        assert status == 200
        await client.expect_nothing(0.5, event="secret")
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_server_to_user_channel_of_another_user(server: RunningServer, rest: Rest) -> None:
    async with pusher(server) as client:
        await client.signin("alice")
        await client.subscribe("#server-to-user-bob")
        frame = await client.recv_event(3)
        assert frame["event"] in ("pusher:subscription_error", "pusher:error"), frame
        status, _ = await asyncio.to_thread(rest.trigger, "#server-to-user-bob", "for-bob", "{}")
        assert status == 200
        await client.expect_nothing(0.5, event="for-bob")
        # its own user channel is allowed (pusher-js subscribes it after signin_success)
        await client.subscribe_ok("#server-to-user-alice")
        status, _ = await asyncio.to_thread(rest.trigger, "#server-to-user-alice", "hi", '"x"')
        assert status == 200
        await client.expect("hi", channel="#server-to-user-alice")
    await assert_alive(server)


# -- client events ---------------------------------------------------------------------------------
async def expect_4301(client: PusherWS) -> dict[str, Any]:
    frame = await client.expect("pusher:error")
    assert frame["data"]["code"] == 4301, frame
    no_traceback(frame["data"]["message"])
    return frame


@pytest.mark.asyncio
async def test_client_event_on_public_channel(server: RunningServer) -> None:
    async with pusher(server) as sender, pusher(server) as peer:
        await sender.subscribe_ok("public-chat")
        await peer.subscribe_ok("public-chat")
        await sender.send("client-hi", {"x": 1}, channel="public-chat")
        await expect_4301(sender)
        await peer.expect_nothing(0.5, event="client-hi")
        assert await sender.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_client_event_when_not_subscribed(server: RunningServer) -> None:
    async with pusher(server) as sender, pusher(server) as peer:
        await peer.subscribe_private("private-chat-ns")
        await sender.send("client-hi", {"x": 1}, channel="private-chat-ns")
        await expect_4301(sender)
        await peer.expect_nothing(0.5, event="client-hi")
        assert await sender.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_client_event_is_delivered_to_others_not_echoed(server: RunningServer) -> None:
    async with pusher(server) as sender, pusher(server) as peer:
        await sender.subscribe_private("private-chat-ok")
        await peer.subscribe_private("private-chat-ok")
        await sender.send("client-hi", {"x": 1}, channel="private-chat-ok")
        frame = await peer.expect("client-hi", channel="private-chat-ok")
        assert frame["data"] == {"x": 1} and "user_id" not in frame, frame
        await sender.expect_nothing(0.5, event="client-hi")
    await assert_alive(server)


@pytest.mark.asyncio
async def test_client_events_disabled_for_the_app(server: RunningServer) -> None:
    async with pusher(server, LIMITED) as sender:
        await sender.subscribe_private("private-chat")
        await sender.send("client-hi", {"x": 1}, channel="private-chat")
        await expect_4301(sender)
        assert await sender.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_client_events_over_the_rate_limit(server: RunningServer) -> None:
    """Default 10 per second per socket; the excess is rejected with 4301, the socket stays."""
    async with pusher(server) as sender, pusher(server) as peer:
        await sender.subscribe_private("private-flood")
        await peer.subscribe_private("private-flood")
        for i in range(20):
            await sender.send("client-n", {"i": i}, channel="private-flood")
        errors = 0
        try:
            while True:
                frame = await sender.recv_event(1)
                if frame["event"] == "pusher:error":
                    assert frame["data"]["code"] == 4301, frame
                    errors += 1
        except TimeoutError:
            pass
        received = 0
        try:
            while True:
                if (await peer.recv_event(0.5))["event"] == "client-n":
                    received += 1
        except TimeoutError:
            pass
        # a fresh socket's burst of 20 in well under a second: 10 pass, each other one is a
        # pusher:error 4301 (docs/protocol.md "Client events": every refusal is a 4301)
        assert (received, errors) == (10, 10)
        assert await sender.is_open()
        # after the window the sender may publish again
        await asyncio.sleep(1.1)
        await sender.send("client-n", {"i": "again"}, channel="private-flood")
        frame = await peer.expect("client-n", channel="private-flood")
        assert frame["data"] == {"i": "again"}
    await assert_alive(server)


@pytest.mark.asyncio
async def test_client_event_over_max_payload_kb(server: RunningServer) -> None:
    """max_payload_kb default 10: a bigger client event is rejected with 4301."""
    async with pusher(server) as sender, pusher(server) as peer:
        await sender.subscribe_private("private-big")
        await peer.subscribe_private("private-big")
        await sender.send("client-big", "x" * (11 * 1024), channel="private-big")
        await expect_4301(sender)
        await peer.expect_nothing(0.5, event="client-big")
        assert await sender.is_open()
    await assert_alive(server)


# -- signin ----------------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "make",
    [
        lambda sid: {"auth": "test-key:" + "0" * 64, "user_data": json.dumps({"id": "u"})},
        lambda sid: {"auth": user_auth(APP, "1.1", '{"id":"u"}'), "user_data": '{"id":"u"}'},
        lambda sid: {"auth": user_auth(APP, sid, '{"name":"u"}'), "user_data": '{"name":"u"}'},
        lambda sid: {"auth": user_auth(APP, sid, '{"id":""}'), "user_data": '{"id":""}'},
        lambda sid: {"auth": user_auth(APP, sid, "not json"), "user_data": "not json"},
        lambda sid: {"user_data": '{"id":"u"}'},
        lambda sid: "[1]",  # a string that is JSON but no object (one that is not JSON: 4300)
    ],
    ids=["bad-signature", "other-socket", "no-id", "empty-id", "not-json", "no-auth", "string"],
)
async def test_bad_signin(server: RunningServer, make: Any) -> None:
    """Signin failure: pusher:error 4009 and close 4009 (docs/protocol.md, "Close codes")."""
    async with pusher(server) as client:
        await client.send("pusher:signin", make(client.socket_id))
        code, _reason, frames = await client.expect_close(5)
        errors = [f for f in frames if f["event"] == "pusher:error"]
        assert errors and errors[0]["data"]["code"] == 4009, frames
        no_traceback(errors[0]["data"]["message"])
        assert code == 4009, (code, frames)
    await assert_alive(server)


# -- bytes that are not HTTP or not a proper upgrade -----------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\x13\x37 garbage \r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        b"GET\r\n\r\n",
        b"BREW /coffee HTCPCP/1.0\r\n\r\n",
    ],
    ids=["binary", "tls-hello", "no-path", "bad-version"],
)
async def test_garbage_instead_of_http(server: RunningServer, garbage: bytes) -> None:
    conn = await RawConn.open(server.host, server.port)
    try:
        await conn.write(garbage)
        assert await conn.closed_by_peer(5), "the server kept a garbage connection open"
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_huge_headers(server: RunningServer) -> None:
    """More than 64 KB of request head: 431 (or the connection is closed)."""
    conn = await RawConn.open(server.host, server.port)
    try:
        headers = {f"X-Filler-{i}": "y" * 1000 for i in range(70)}
        try:
            await conn.write(
                upgrade_request(server.host, server.port, f"/app/{APP['key']}", headers)
            )
        except (ConnectionError, TimeoutError):
            pass  # closed while we were still writing: acceptable
        else:
            try:
                status, _, _ = await conn.read_http_head()
                assert status == 431, status
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # closed without an answer: acceptable
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_huge_headers_on_http_api(server: RunningServer) -> None:
    conn = await RawConn.open(server.host, server.port)
    try:
        filler = "".join(f"X-Filler-{i}: {'y' * 1000}\r\n" for i in range(70))
        try:
            await conn.write(f"GET /health HTTP/1.1\r\nHost: x\r\n{filler}\r\n".encode())
            status, _, _ = await conn.read_http_head()
            assert status == 431, status
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_silent_tcp_client_is_closed_after_the_handshake_timeout(tmp_path: Path) -> None:
    """handshake_timeout (settings-draft): a connection that sends nothing, or a partial request
    head, is closed; meanwhile other clients are served."""
    with run_server(tmp_path, settings={"handshake_timeout": 1}) as srv:
        silent = await RawConn.open(srv.host, srv.port)
        partial = await RawConn.open(srv.host, srv.port)
        try:
            await partial.write(b"GET /app/test-key?protocol=7 HTTP/1.1\r\nHost: x\r\n")
            await assert_alive(srv)  # served while the two are pending
            assert await silent.closed_by_peer(4), "silent connection not closed"
            assert await partial.closed_by_peer(4), "partial request head not closed"
        finally:
            await silent.close()
            await partial.close()
        await assert_alive(srv)


@pytest.mark.asyncio
async def test_many_silent_tcp_clients_do_not_block_others(server: RunningServer) -> None:
    conns = [await RawConn.open(server.host, server.port) for _ in range(50)]
    try:
        await assert_alive(server)
    finally:
        for conn in conns:
            await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["8", "12", "abc", None])
async def test_bad_websocket_version(server: RunningServer, version: str | None) -> None:
    """RFC 6455 §4.4: 426 with ``Sec-WebSocket-Version: 13`` (400 is tolerated)."""
    conn = await RawConn.open(server.host, server.port)
    try:
        await conn.write(
            upgrade_request(
                server.host,
                server.port,
                f"/app/{APP['key']}?protocol=7",
                {"Sec-WebSocket-Version": version},  # type: ignore[dict-item]
            )
        )
        status, headers, _ = await conn.read_http_head()
        assert status in (426, 400), status
        if status == 426:
            assert headers.get("sec-websocket-version") == "13", headers
        body = await conn.read_body(headers)
        no_traceback(body.decode("utf-8", "replace"))
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [{"Sec-WebSocket-Key": None}, {"Sec-WebSocket-Key": "short"}, {"Upgrade": "h2c"}],
    ids=["no-key", "bad-key", "wrong-upgrade"],
)
async def test_bad_upgrade_request(server: RunningServer, headers: dict[str, Any]) -> None:
    conn = await RawConn.open(server.host, server.port)
    try:
        await conn.write(upgrade_request(server.host, server.port, f"/app/{APP['key']}", headers))
        status, head, _ = await conn.read_http_head()
        assert 400 <= status < 500, status
        no_traceback((await conn.read_body(head)).decode("utf-8", "replace"))
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_upgrade_on_an_unknown_path(server: RunningServer) -> None:
    """Not ``/app/{key}``: a 4xx (404, or 400 explaining the path), or 4005 "path not found"."""
    conn = await RawConn.open(server.host, server.port)
    try:
        status = await conn.handshake(server.host, server.port, "/nope/test-key")
        if status == 101:
            code, _, _ = await conn.read_until_close()
            assert code == 4005
        else:
            assert status in (400, 404), status
    finally:
        await conn.close()
    await assert_alive(server)


# -- connection refusals ---------------------------------------------------------------------------
async def refused(url: str, app: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
    async with open_ws(url, app, established=False) as client:
        code, _reason, frames = await client.expect_close(5)
    return code, frames


def assert_refused(code: int | None, frames: list[dict[str, Any]], want: int) -> None:
    """docs/protocol.md, "Error codes": ``pusher:error {code}`` then a close with the same code."""
    errors = [f for f in frames if f["event"] == "pusher:error"]
    assert errors, frames
    assert errors[0]["data"]["code"] == want, frames
    no_traceback(errors[0]["data"]["message"])
    assert not any(f["event"] == "pusher:connection_established" for f in frames), frames
    assert code == want, (code, frames)


@pytest.mark.asyncio
async def test_unknown_app_key(server: RunningServer) -> None:
    code, frames = await refused(server.ws_url("no-such-key"), APP)
    assert_refused(code, frames, 4001)
    await assert_alive(server)


@pytest.mark.asyncio
@pytest.mark.parametrize("query", ["protocol=5", "protocol=6", "protocol=8", "protocol=1"])
async def test_unsupported_protocol(server: RunningServer, query: str) -> None:
    code, frames = await refused(server.ws_url(APP["key"], query + "&client=js&version=8.4.0"), APP)
    assert_refused(code, frames, 4007)
    await assert_alive(server)


@pytest.mark.asyncio
async def test_non_numeric_protocol(server: RunningServer) -> None:
    url = server.ws_url(APP["key"], "protocol=seven&client=js&version=8.4.0")
    async with open_ws(url, APP, established=False) as client:
        code, _reason, frames = await client.expect_close(5)
    assert_refused(code, frames, 4006)  # docs/protocol.md: 4006 if it is not a number
    await assert_alive(server)


@pytest.mark.asyncio
async def test_missing_protocol_is_accepted(server: RunningServer) -> None:
    """Accept a missing ``protocol`` like the hosted service does (docs/protocol.md, "Protocol
    version")."""
    async with pusher(server, query="client=js&version=8.4.0") as client:
        assert client.socket_id
    await assert_alive(server)


@pytest.mark.asyncio
async def test_disabled_app(server: RunningServer) -> None:
    code, frames = await refused(server.ws_url(DISABLED["key"]), DISABLED)
    assert_refused(code, frames, 4003)
    await assert_alive(server)


@pytest.mark.asyncio
async def test_connection_quota(server: RunningServer) -> None:
    """App 1002 allows 2 connections: the third gets 4004 ("Close codes"), a slot frees on close."""
    async with pusher(server, LIMITED) as first, pusher(server, LIMITED):
        code, frames = await refused(server.ws_url(LIMITED["key"]), LIMITED)
        assert_refused(code, frames, 4004)
        await first.close()
        await asyncio.sleep(0.3)
        async with pusher(server, LIMITED) as third:
            assert third.socket_id
    await assert_alive(server)


# -- liveness --------------------------------------------------------------------------------------
@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[RunningServer]:
    with run_server(tmp_path, settings={"activity_timeout": 1, "pong_timeout": 1}) as srv:
        yield srv


@pytest.mark.asyncio
async def test_silent_client_is_pinged_then_closed_4201(fast_server: RunningServer) -> None:
    async with pusher(fast_server) as client:
        assert client.activity_timeout == 1
        async with asyncio.timeout(4):
            frame = await client.recv_event(4)
        assert frame["event"] == "pusher:ping", frame
        code, _reason, frames = await client.expect_close(5)
        assert code == 4201, (code, frames)
        errors = [f for f in frames if f["event"] == "pusher:error"]
        assert not errors or errors[0]["data"]["code"] == 4201, frames
    await assert_alive(fast_server)


@pytest.mark.asyncio
async def test_client_answering_pings_stays(fast_server: RunningServer) -> None:
    async with pusher(fast_server) as client:
        pings = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        while loop.time() < end:
            try:
                frame = await client.recv_event(end - loop.time())
            except TimeoutError:
                break
            assert frame["event"] == "pusher:ping", frame
            pings += 1
            await client.send("pusher:pong", {})
        assert pings >= 2, pings
        assert await client.is_open()
    await assert_alive(fast_server)


@pytest.mark.asyncio
async def test_client_pinging_itself_is_not_closed(fast_server: RunningServer) -> None:
    """A client that sends ``pusher:ping`` keeps the connection alive (any message counts)."""
    async with pusher(fast_server) as client:
        for _ in range(8):
            await client.send("pusher:ping", {})
            await client.expect("pusher:pong")
            await asyncio.sleep(0.5)
        assert await client.is_open()


@pytest.mark.asyncio
async def test_websocket_ping_frame_is_answered(server: RunningServer) -> None:
    async with pusher(server) as client:
        pong = await client.ws.ping(b"are-you-there")
        async with asyncio.timeout(3):
            await pong
        assert await client.is_open()
    conn = await raw_established(server)
    try:
        await conn.send_frame(OP_PING, b"raw-ping")
        assert await conn.read_frame() == (OP_PONG, b"raw-ping")
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_close_frame_is_echoed(server: RunningServer) -> None:
    conn = await raw_established(server)
    try:
        await conn.send_frame(0x8, struct.pack("!H", 1000) + b"bye")
        code, _, _ = await conn.read_until_close()
        assert code == 1000
        assert await conn.closed_by_peer(3)
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_abrupt_disconnect_cleans_up(server: RunningServer, rest: Rest) -> None:
    """A client that vanishes without a close frame is removed from its channels."""
    conn = await raw_established(server)
    await conn.send_frame(
        OP_TEXT, json.dumps({"event": "pusher:subscribe", "data": {"channel": "vanish"}}).encode()
    )
    _opcode, payload = await conn.read_frame()
    assert b"subscription_succeeded" in payload, payload
    conn.writer.transport.abort()
    await asyncio.sleep(0.5)
    status, info = await asyncio.to_thread(rest.channel_info, "vanish")
    assert status == 200 and info["occupied"] is False, info
    await assert_alive(server)


# -- documented limits and refusals (docs/protocol.md) ---------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "member",
    [{"user_id": "x" * 129}, {"user_id": "big", "user_info": {"pad": "x" * 1100}}],
    ids=["user-id-129", "user-info-over-1kb"],
)
async def test_presence_member_limits(server: RunningServer, member: dict[str, Any]) -> None:
    """user_id at most 128 characters, user_info at most 1 KB -> LimitReached / 4100
    (docs/protocol.md, "Presence members")."""
    channel = "presence-member-limits"
    async with pusher(server) as client:
        channel_data = json.dumps(member)
        auth = channel_auth(APP, client.socket_id, channel, channel_data)
        await client.subscribe(channel, auth, channel_data)
        frame = await client.expect("pusher:subscription_error")
        assert_subscription_error(frame, channel, type="LimitReached", status=4100)
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_presence_user_id_of_128_is_accepted(server: RunningServer) -> None:
    async with pusher(server) as client:
        await client.subscribe_presence("presence-128", "u" * 128)
    await assert_alive(server)


@pytest.mark.asyncio
async def test_presence_channel_full(tmp_path: Path) -> None:
    """max_presence_members counts users: a third user is refused with LimitReached / 4100,
    another socket of a user already present is not."""
    apps = [{**APP, "max_presence_members": 2}]
    with run_server(tmp_path, apps=apps) as srv:
        async with (
            pusher(srv) as a,
            pusher(srv) as b,
            pusher(srv) as b2,
            pusher(srv) as c,
        ):
            await a.subscribe_presence("presence-full", "a")
            await b.subscribe_presence("presence-full", "b")
            await a.expect("pusher_internal:member_added", channel="presence-full")
            await b2.subscribe_presence("presence-full", "b")
            channel_data = json.dumps({"user_id": "c"})
            auth = channel_auth(APP, c.socket_id, "presence-full", channel_data)
            await c.subscribe("presence-full", auth, channel_data)
            frame = await c.expect("pusher:subscription_error")
            assert_subscription_error(frame, "presence-full", type="LimitReached", status=4100)
            assert await c.is_open()
            await a.expect_nothing(0.3, event="pusher_internal:member_added")
        await assert_alive(srv)


@pytest.mark.asyncio
async def test_signin_as_a_second_user_is_refused(server: RunningServer) -> None:
    async with pusher(server) as client:
        await client.signin("first")
        user_data = json.dumps({"id": "second"})
        await client.send(
            "pusher:signin",
            {"auth": user_auth(APP, client.socket_id, user_data), "user_data": user_data},
        )
        code, _reason, frames = await client.expect_close(5)
        assert [f["data"]["code"] for f in frames if f["event"] == "pusher:error"] == [4009]
        assert code == 4009
    await assert_alive(server)


@pytest.mark.asyncio
async def test_signin_again_as_the_same_user_is_fine(server: RunningServer) -> None:
    async with pusher(server) as client:
        await client.signin("same")
        await client.signin("same")
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_watchlist_over_100_ids(server: RunningServer) -> None:
    """4302 as pusher:error, the first 100 ids used, the sign-in succeeds (docs/protocol.md,
    "Error codes")."""
    async with pusher(server) as client:
        user_data = json.dumps({"id": "watcher", "watchlist": [f"w{i}" for i in range(150)]})
        await client.send(
            "pusher:signin",
            {"auth": user_auth(APP, client.socket_id, user_data), "user_data": user_data},
        )
        seen = [await client.recv_event(3), await client.recv_event(3)]
        events = {f["event"]: f for f in seen}
        assert set(events) >= {"pusher:signin_success", "pusher:error"}, seen
        assert events["pusher:error"]["data"]["code"] == 4302
        assert await client.is_open()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_client_event_name_over_200_chars(server: RunningServer) -> None:
    async with pusher(server) as sender, pusher(server) as peer:
        await sender.subscribe_private("private-long-name")
        await peer.subscribe_private("private-long-name")
        await sender.send("client-" + "x" * 194, {}, channel="private-long-name")
        await expect_4301(sender)
        await peer.expect_nothing(0.3)
        await sender.send("client-" + "x" * 193, {}, channel="private-long-name")
        await peer.expect("client-" + "x" * 193)
    await assert_alive(server)


@pytest.mark.asyncio
async def test_request_head_over_16kb_is_431(server: RunningServer) -> None:
    conn = await RawConn.open(server.host, server.port)
    try:
        await conn.write(
            f"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {'y' * 17000}\r\n\r\n".encode()
        )
        status, _, _ = await conn.read_http_head()
        assert status == 431, status
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
async def test_more_than_100_headers_is_431(server: RunningServer) -> None:
    conn = await RawConn.open(server.host, server.port)
    try:
        filler = "".join(f"X-H{i}: v\r\n" for i in range(101))
        await conn.write(f"GET /health HTTP/1.1\r\nHost: x\r\n{filler}\r\n".encode())
        status, _, _ = await conn.read_http_head()
        assert status == 431, status
    finally:
        await conn.close()
    await assert_alive(server)


# -- malformed WebSocket framing (RFC 6455; docs/protocol.md close codes) ------------------------
def frame_bytes(first: int, payload: bytes) -> bytes:
    """A masked frame with a hand-made first byte (FIN, RSV and opcode bits)."""
    body = encode_frame(OP_TEXT, payload)
    return bytes([first]) + body[1:]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("frames", "want"),
    [
        ([frame_bytes(0x80 | 0x40 | OP_TEXT, b"{}")], 1002),  # RSV1 without an extension
        ([frame_bytes(0x80 | 0x20 | OP_TEXT, b"{}")], 1002),  # RSV2
        ([encode_frame(OP_PING, b"x" * 126)], 1002),  # control frame over 125 bytes
        ([encode_frame(OP_PING, b"x", fin=False)], 1002),  # fragmented control frame
        ([encode_frame(OP_CONT, b"x")], 1002),  # continuation with nothing to continue
        (
            [encode_frame(OP_TEXT, b"{", fin=False), encode_frame(OP_TEXT, b"}")],
            1002,
        ),  # a new message in the middle of a fragmented one
        ([encode_frame(0x8, b"\x03")], 1002),  # close payload of one byte
        ([encode_frame(0x8, struct.pack("!H", 999))], 1002),  # close code out of range
        ([encode_frame(0x8, struct.pack("!H", 1005))], 1002),  # reserved close code
        ([encode_frame(0x8, struct.pack("!H", 1000) + b"\xff\xfe")], 1007),  # non-UTF-8 reason
    ],
    ids=[
        "rsv1",
        "rsv2",
        "long-control",
        "fragmented-control",
        "orphan-continuation",
        "interleaved-message",
        "close-one-byte",
        "close-code-999",
        "close-code-1005",
        "close-reason-not-utf8",
    ],
)
async def test_malformed_websocket_frames(
    server: RunningServer, frames: list[bytes], want: int
) -> None:
    conn = await raw_established(server)
    try:
        for frame in frames:
            await conn.write(frame)
        code, _reason, _ = await conn.read_until_close()
        assert code == want
    finally:
        await conn.close()
    await assert_alive(server)


@pytest.mark.asyncio
@pytest.mark.parametrize(("sent", "echoed"), [(1000, 1000), (1001, 1001), (4000, 1000)])
async def test_client_close_is_answered(server: RunningServer, sent: int, echoed: int) -> None:
    """docs/protocol.md: a client code below 4000 is echoed, otherwise the answer is 1000."""
    conn = await raw_established(server)
    try:
        await conn.send_frame(0x8, struct.pack("!H", sent) + b"bye")
        code, _, _ = await conn.read_until_close()
        assert code == echoed
        assert await conn.closed_by_peer(3)
    finally:
        await conn.close()
    await assert_alive(server)
