"""Client frames (protocol/messages.py, protocol/session.py, node/node.py) with JSON-ish text:
odd types for event, channel, data, auth, channel_data and user_data, huge numbers, deep
nesting, surrogate escapes, frames cut or mangled, some correctly signed so that the checks
after the signature run too.

- ``Session.receive`` never raises; it returns None or one of its actions, a ``Fail`` carries a
  documented 4xxx code, and what is not a JSON object with an event name is a 4300.
- Every string an action carries can be encoded and sent (UTF-8, JSON).
- ``Node.receive`` (the session's action applied: subscriptions, presence, sign-in, fan-out)
  never raises either: in the server an exception there is a 1011 and a logged traceback.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ressonance.models import App
from ressonance.node.node import Node
from ressonance.protocol import channels, codes, messages, signatures
from ressonance.protocol import session as actions
from ressonance.protocol.session import Session
from ressonance.scaling.memory import MemoryBroker
from tests.fuzz.jsonish import json_text, odd_value, raw_snippet
from tests.fuzz.wire import Recorder, strict_json

pytestmark = pytest.mark.fuzz

KEY, SECRET, SID, OTHER = "key", "secret", "123.456", "789.1"
APP = App(id="1", key=KEY, secret=SECRET, max_client_events_per_second=0, max_payload_kb=4)
# the 4xxx codes a pusher:error may carry (protocol/codes.py)
DOCUMENTED = {v for v in vars(codes).values() if isinstance(v, int) and 4000 <= v < 4400}
SUBSCRIBED = {"private-a": None, "presence-b": "u1", "news": None}

EVENTS = [
    "pusher:subscribe",
    "pusher:subscribe",
    "pusher:unsubscribe",
    "pusher:signin",
    "pusher:ping",
    "pusher:pong",
    "client-x",
    "client-" + "y" * 300,
    "pusher:whatever",
    "",
]
CHANNELS = [
    "news",
    "private-a",
    "presence-b",
    "presence-new",
    "private-encrypted-c",
    "private-cache-d",
    "presence-cache-e",
    "#server-to-user-u1",
    "a" * 300,
    "bad name!",
    "",
]


@st.composite
def member_text(draw: st.DrawFn) -> str:
    """presence channel_data: a JSON string with user_id and user_info, often odd."""
    snippets: list[str] = []
    member: dict[str, Any] = {}
    if draw(st.integers(0, 5)):
        member["user_id"] = draw(odd_value(snippets, ["u1", "u2", 7, "", "x" * 200, True]))
    if draw(st.booleans()):
        member["user_info"] = draw(odd_value(snippets, [{"name": "n"}, "x" * 2000, None]))
    return draw(json_text(member, snippets))


@st.composite
def user_text(draw: st.DrawFn) -> str:
    """pusher:signin user_data: a JSON string with id and watchlist, often odd."""
    snippets: list[str] = []
    user: dict[str, Any] = {}
    if draw(st.integers(0, 5)):
        user["id"] = draw(odd_value(snippets, ["u1", "u2", 7, "", None]))
    if draw(st.booleans()):
        user["watchlist"] = draw(odd_value(snippets, [["u2", 3], list(range(150)), "u2"]))
    return draw(json_text(user, snippets))


@st.composite
def client_frame(draw: st.DrawFn) -> str:
    """The text of one client frame."""
    if draw(st.integers(0, 6)) == 0:
        return draw(st.text(max_size=200))  # anything a text frame may hold
    snippets: list[str] = []
    if draw(st.integers(0, 3)) == 0:  # a client event that passes the checks up to its data
        channel = draw(st.sampled_from(sorted(SUBSCRIBED)))
        frame = {"event": "client-x", "channel": channel, "data": draw(odd_value(snippets))}
        return draw(json_text(frame, snippets))
    inner: dict[str, Any] = {}
    if draw(st.integers(0, 4)):
        inner["channel"] = draw(odd_value(snippets, CHANNELS))
    if draw(st.booleans()):
        inner["channel_data"] = draw(member_text() | odd_value(snippets))
    if draw(st.booleans()):
        inner["user_data"] = draw(user_text() | odd_value(snippets))
    if draw(st.booleans()):
        inner["auth"] = draw(odd_value(snippets, ["key:bad", "", KEY + ":" + "0" * 64]))
    _sign(draw, inner)
    frame: dict[str, Any] = {"event": draw(odd_value(snippets, EVENTS))}
    if draw(st.booleans()):
        frame["channel"] = draw(odd_value(snippets, CHANNELS))
    data_as = draw(st.sampled_from(["object", "string", "raw-string", "odd", "none"]))
    if data_as == "object":
        frame["data"] = inner
    elif data_as == "string":  # double encoded, as pusher-js sends client events
        frame["data"] = draw(json_text(inner, snippets))
    elif data_as == "raw-string":  # a string holding what json.dumps would not write
        frame["data"] = draw(raw_snippet())
    elif data_as == "odd":
        frame["data"] = draw(odd_value(snippets))
    return draw(json_text(frame, snippets))


def _sign(draw: st.DrawFn, inner: dict[str, Any]) -> None:
    """Often the right auth for what ``inner`` asks (it is signed for socket ``SID``)."""
    if not draw(st.integers(0, 3)):
        return
    channel, channel_data = inner.get("channel"), inner.get("channel_data")
    user_data = inner.get("user_data")
    if isinstance(user_data, str) and draw(st.booleans()):
        inner["auth"] = signatures.user_auth(KEY, SECRET, SID, user_data)
    elif isinstance(channel, str) and (channel_data is None or isinstance(channel_data, str)):
        signed = channel_data if channels.kind_of(channel).presence else None
        inner["auth"] = signatures.channel_auth(KEY, SECRET, SID, channel, signed)


def is_frame(text: str) -> bool:
    """A JSON object with a non-empty string event and no non-string channel."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    if not isinstance(value, dict):
        return False
    event, channel = value.get("event"), value.get("channel")
    return isinstance(event, str) and event != "" and (channel is None or isinstance(channel, str))


def check_action(action: object) -> None:
    """The action is one the node knows, and everything in it can be encoded and sent."""
    if action is None:
        return
    if isinstance(action, actions.Fail):
        assert action.code in DOCUMENTED, action
        messages.error(action.code, action.message).encode()
    elif isinstance(action, actions.Reply):
        assert isinstance(strict_json(action.frame)["event"], str)
        action.frame.encode()
    elif isinstance(action, actions.Subscribe):
        assert channels.is_valid_name(action.channel)
        if action.member is not None:
            assert isinstance(action.member.user_id, str) and action.member.user_id
            messages.dumps(action.member.user_info).encode()
    elif isinstance(action, actions.Unsubscribe):
        assert isinstance(action.channel, str)
    elif isinstance(action, actions.SignIn):
        assert isinstance(action.user_id, str) and action.user_id
        assert all(isinstance(w, str) for w in action.watchlist)
        action.user_data.encode()
    elif isinstance(action, actions.ClientEvent):  # what the other subscribers will parse
        strict_json(
            messages.encode_client_event(action.event, action.channel, action.data, action.user_id)
        )
    else:
        raise AssertionError(f"not an action: {action!r}")


DEEP_DATA = '{"event":"pusher:subscribe","data":"' + "[" * 100_000 + '"}'
DEEP_CHANNEL_DATA = json.dumps(
    {"event": "pusher:subscribe", "data": {"channel": "presence-b", "channel_data": "[" * 5000}}
)
HUGE = '{"event":"client-x","channel":"private-a","data":' + "9" * 5000 + "}"
# Python's json reads NaN, Infinity and 1e999 (inf); forwarded, no client could parse the frame
NOT_JSON = '{"event":"client-x","channel":"private-a","data":{"a":NaN,"b":-1e999}}'


@given(st.lists(client_frame(), min_size=1, max_size=4))
@example([DEEP_DATA])  # a JSON string holding deep nesting, decoded by data_object()
@example([DEEP_CHANNEL_DATA])
@example([HUGE])
@example(['{"event":"client-x","channel":"private-a","data":"\\ud800"}'])
@example([NOT_JSON])
def test_session_returns_a_documented_action(frames: list[str]) -> None:
    session = Session(APP, SID)
    session.channels.update(SUBSCRIBED)
    for text in frames:
        action = session.receive(text, 1000.0)
        check_action(action)
        if not is_frame(text):
            assert isinstance(action, actions.Fail) and action.code == 4300, (action, text[:200])


def _node_with_two_sockets() -> tuple[Node, Recorder, Recorder]:
    """A node, socket ``SID`` (the fuzzed one) and a second socket on the same channels."""
    node = Node(MemoryBroker(), clock=lambda: 1000.0)
    asyncio.run(node.start())
    a, b = Recorder(DOCUMENTED), Recorder(DOCUMENTED)
    with mock.patch("ressonance.node.node.new_socket_id", side_effect=[SID, OTHER]):
        node.connect(a, APP)
        node.connect(b, APP)
    for sock, user in ((a, "u1"), (b, "u2")):
        sid = sock.session.socket_id
        cd = json.dumps({"user_id": user, "user_info": {"n": user}})
        for channel in SUBSCRIBED:
            data: dict[str, Any] = {"channel": channel}
            if channel.startswith("presence-"):
                data |= {"channel_data": cd}
            if channel != "news":
                signed = cd if channel.startswith("presence-") else None
                data["auth"] = signatures.channel_auth(KEY, SECRET, sid, channel, signed)
            node.receive(sock, json.dumps({"event": "pusher:subscribe", "data": data}))
    assert a.session.channels.keys() == SUBSCRIBED.keys(), a.frames
    return node, a, b


@given(st.lists(client_frame(), min_size=1, max_size=6))
@example([DEEP_DATA, DEEP_CHANNEL_DATA, HUGE, NOT_JSON])
def test_node_applies_any_client_frame(frames: list[str]) -> None:
    node, a, b = _node_with_two_sockets()
    for text in frames:
        node.receive(a, text)
    node.disconnect(a)  # leaving cleans up whatever the frames set up
    node.disconnect(b)
    assert not node.hub.state(APP).sockets
