from __future__ import annotations

import json

import pytest

from ressonance.errors import PusherError
from ressonance.protocol import codes, messages


def test_server_event_data_is_a_json_string() -> None:
    frame = json.loads(messages.encode_event("e", "c", {"a": 1}))
    assert frame == {"event": "e", "channel": "c", "data": '{"a":1}'}
    assert json.loads(messages.encode_event("e", "c", "raw"))["data"] == "raw"


def test_connection_established() -> None:
    frame = json.loads(messages.connection_established("1.2", 120))
    assert json.loads(frame["data"]) == {"socket_id": "1.2", "activity_timeout": 120}


def test_client_data_kept_as_sent() -> None:
    assert json.loads(messages.encode_client_event("client-x", "private-a", {"x": 1}, None)) == {
        "event": "client-x",
        "channel": "private-a",
        "data": {"x": 1},
    }
    frame = json.loads(messages.encode_client_event("client-x", "presence-a", "s", "7"))
    assert frame["data"] == "s" and frame["user_id"] == "7"


@pytest.mark.parametrize(
    "text",
    ["nope", "[]", "1", '{"data":{}}', '{"event":""}', '{"event":"e","channel":5}', "[" * 100000],
)
def test_bad_frames_raise_non_fatal_error(text: str) -> None:
    with pytest.raises(PusherError) as info:
        messages.parse_client_frame(text)
    assert 4300 <= info.value.code < 4400
    assert not codes.is_fatal(info.value.code)


def test_data_object_accepts_object_or_string() -> None:
    as_obj = messages.parse_client_frame('{"event":"pusher:subscribe","data":{"channel":"a"}}')
    as_str = messages.parse_client_frame(
        '{"event":"pusher:subscribe","data":"{\\"channel\\":\\"a\\"}"}'
    )
    assert as_obj.data_object() == as_str.data_object() == {"channel": "a"}
    assert messages.parse_client_frame('{"event":"x","data":"[1]"}').data_object() == {}


def test_subscription_error_shape() -> None:
    frame = json.loads(messages.subscription_error("private-a", "AuthError", "bad", 401))
    assert frame == {
        "event": "pusher:subscription_error",
        "channel": "private-a",
        "data": {"type": "AuthError", "error": "bad", "status": 401},
    }


def test_limit_reached() -> None:
    assert messages.limit_reached("presence-a", "Presence channel is full", 4100) == (
        '{"event":"pusher:subscription_error","channel":"presence-a",'
        '"data":{"type":"LimitReached","error":"Presence channel is full","status":4100}}'
    )


def test_subscription_succeeded() -> None:
    assert messages.subscription_succeeded("a") == (
        '{"event":"pusher_internal:subscription_succeeded","channel":"a","data":"{}"}'
    )
    presence = {"ids": ["1"], "hash": {"1": {"n": "é"}}, "count": 1}
    assert messages.subscription_succeeded("presence-a", presence) == (
        '{"event":"pusher_internal:subscription_succeeded","channel":"presence-a",'
        '"data":"{\\"presence\\":{\\"ids\\":[\\"1\\"],\\"hash\\":{\\"1\\":{\\"n\\":\\"é\\"}},'
        '\\"count\\":1}}"}'
    )


def test_subscription_count() -> None:
    assert messages.subscription_count("a", 3) == (
        '{"event":"pusher_internal:subscription_count","channel":"a",'
        '"data":"{\\"subscription_count\\":3}"}'
    )


def test_member_added() -> None:
    assert messages.member_added("presence-a", "7", {"name": "x"}) == (
        '{"event":"pusher_internal:member_added","channel":"presence-a",'
        '"data":"{\\"user_id\\":\\"7\\",\\"user_info\\":{\\"name\\":\\"x\\"}}"}'
    )
    assert messages.member_added("presence-a", "7", None) == (
        '{"event":"pusher_internal:member_added","channel":"presence-a",'
        '"data":"{\\"user_id\\":\\"7\\",\\"user_info\\":null}"}'
    )


def test_member_removed() -> None:
    assert messages.member_removed("presence-a", "7") == (
        '{"event":"pusher_internal:member_removed","channel":"presence-a",'
        '"data":"{\\"user_id\\":\\"7\\"}"}'
    )


def test_signin_success() -> None:
    assert messages.signin_success('{"id":"7"}') == (
        '{"event":"pusher:signin_success","data":"{\\"user_data\\":\\"{\\\\\\"id\\\\\\":\\\\\\"7\\\\\\"}\\"}"}'
    )


def test_watchlist_events() -> None:
    assert messages.watchlist_events("online", ["1", "2"]) == (
        '{"event":"pusher_internal:watchlist_events",'
        '"data":"{\\"events\\":[{\\"name\\":\\"online\\",\\"user_ids\\":[\\"1\\",\\"2\\"]}]}"}'
    )


def test_cache_hit_sends_the_kept_event_as_published() -> None:
    assert messages.cache_hit("news", "cache-a", '{"x":1}') == (
        '{"event":"news","channel":"cache-a","data":"{\\"x\\":1}"}'
    )


def test_cache_miss() -> None:
    assert messages.cache_miss("cache-a") == '{"event":"pusher:cache_miss","channel":"cache-a"}'


@pytest.mark.parametrize(
    "text",
    [
        '{"event":"client-x","channel":"private-a","data":"\\ud800"}',
        '{"event":"client-x","channel":"private-a","data":{"k":"a\\uDC00b"}}',
        '{"event":"\\udbff"}',
    ],
)
def test_a_lone_surrogate_escape_is_refused_like_bad_json(text: str) -> None:
    """It decodes to a string with no UTF-8 form: relayed, it would fail every later send."""
    with pytest.raises(PusherError) as info:
        messages.parse_client_frame(text)
    assert info.value.code == 4300


def test_surrogate_pairs_and_plain_backslashes_still_pass() -> None:
    frame = messages.parse_client_frame(
        '{"event":"client-x","data":"\\ud83d\\ude00 \\\\ud800 \\\\uDC00"}'
    )
    assert frame.data == "😀 \\ud800 \\uDC00"
    assert messages.loads(b'{"a":"\\uD83D\\uDE00"}') == {"a": "😀"}
    with pytest.raises(ValueError):
        messages.loads(b'{"a":"\\ud800"}')


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [101, 990, 5000, 100_000])
def test_nesting_past_the_limit_is_a_value_error(depth: int) -> None:
    """Never RecursionError (it escaped every caller that caught ValueError), never a value
    deep enough to fail when encoded again deeper in the stack."""
    with pytest.raises(ValueError, match="nested deeper"):
        messages.loads(nested(depth))
    with pytest.raises(PusherError) as info:
        messages.parse_client_frame(f'{{"event":"client-x","data":{nested(depth)}}}')
    assert info.value.code == 4300


def test_nesting_up_to_the_limit_and_brackets_in_strings_pass() -> None:
    assert messages.loads(nested(messages.MAX_DEPTH)) is not None
    assert messages.loads('{"a":"' + "[{" * 500 + '"}') == {"a": "[{" * 500}
    wide = "[" + ",".join(['{"k":[1]}'] * 1000) + "]"
    assert len(messages.loads(wide)) == 1000


@pytest.mark.parametrize("event", ["pusher:subscribe", "pusher:unsubscribe", "pusher:signin"])
@pytest.mark.parametrize("data", [nested(2500), nested(101), "garbage"], ids=["2500", "101", "x"])
def test_data_string_that_is_not_json_is_4300(event: str, data: str) -> None:
    frame = messages.parse_client_frame(json.dumps({"event": event, "data": data}))
    with pytest.raises(PusherError) as info:
        frame.data_object()
    assert info.value.code == 4300


@pytest.mark.parametrize(
    "raw",
    [b'"\xed\xa0\x80"', b'"\xff"', b'\xef\xbb\xbf{"a":1}', '{"a":1}'.encode("utf-16")],
    ids=["raw-surrogate", "invalid-byte", "utf8-bom", "utf16"],
)
def test_bytes_must_be_utf8_text(raw: bytes) -> None:
    """json.loads alone decodes raw surrogates (surrogatepass), a BOM and UTF-16."""
    with pytest.raises(ValueError):
        messages.loads(raw)


@pytest.mark.parametrize(
    "text", ['{"a":NaN}', '{"a":Infinity}', "[-Infinity]", '{"a":1e999}', '{"a":-1E400}']
)
def test_non_json_numbers_are_refused(text: str) -> None:
    # Python's json accepts them; re-encoded they are not JSON, so every client that received
    # the event would fail to parse it
    with pytest.raises(ValueError):
        messages.loads(text)


def test_ordinary_floats_still_parse() -> None:
    assert messages.loads('{"a":1.5,"b":-2e3,"c":0.0}') == {"a": 1.5, "b": -2000.0, "c": 0.0}
