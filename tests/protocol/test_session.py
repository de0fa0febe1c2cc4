"""The per-connection state machine, fed frames with a fake clock (no event loop)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ressonance.models import App
from ressonance.protocol import signatures
from ressonance.protocol.session import (
    ClientEvent,
    Fail,
    Refuse,
    Reply,
    Session,
    SignIn,
    Subscribe,
    Unsubscribe,
)

APP = App(id="1", key="key", secret="secret", max_client_events_per_second=2, max_payload_kb=1)
SID = "123.456"


def frame(event: str, data: Any = None, channel: str | None = None) -> str:
    out: dict[str, Any] = {"event": event}
    if data is not None:
        out["data"] = data
    if channel is not None:
        out["channel"] = channel
    return json.dumps(out)


def session(app: App = APP) -> Session:
    return Session(app, SID)


def test_ping_gets_pong() -> None:
    action = session().receive(frame("pusher:ping", {}), 0)
    assert isinstance(action, Reply) and json.loads(action.frame)["event"] == "pusher:pong"


def test_pong_and_unknown_unsubscribe_are_quiet() -> None:
    s = session()
    assert s.receive(frame("pusher:pong", {}), 0) is None
    assert s.receive(frame("pusher:unsubscribe", {}), 0) is None
    assert s.receive(frame("pusher:unsubscribe", {"channel": "a"}), 0) == Unsubscribe("a")


def test_unknown_pusher_event_is_a_non_fatal_error() -> None:
    action = session().receive(frame("pusher:whatever", {}), 0)
    assert isinstance(action, Fail) and action.code == 4300


def test_public_subscribe() -> None:
    action = session().receive(frame("pusher:subscribe", {"channel": "news"}), 0)
    assert isinstance(action, Subscribe) and action.channel == "news" and action.member is None


def test_private_subscribe_needs_valid_auth() -> None:
    good = signatures.channel_auth("key", "secret", SID, "private-a")
    ok = session().receive(frame("pusher:subscribe", {"channel": "private-a", "auth": good}), 0)
    assert isinstance(ok, Subscribe)
    bad = session().receive(
        frame("pusher:subscribe", {"channel": "private-a", "auth": "key:00"}), 0
    )
    assert isinstance(bad, Reply)
    error = json.loads(bad.frame)
    assert error["event"] == "pusher:subscription_error"
    assert error["data"]["type"] == "AuthError" and error["data"]["status"] == 401


def test_presence_subscribe_with_string_data() -> None:
    cd = json.dumps({"user_id": 7, "user_info": {"name": "a"}})
    auth = signatures.channel_auth("key", "secret", SID, "presence-a", cd)
    data = json.dumps({"channel": "presence-a", "auth": auth, "channel_data": cd})
    action = session().receive(frame("pusher:subscribe", data), 0)
    assert isinstance(action, Subscribe)
    assert action.member is not None and action.member.user_id == "7"


@pytest.mark.parametrize(
    ("channel_data", "kind"),
    [
        ("not json", "AuthError"),
        ('{"user_info":{}}', "AuthError"),
        ('{"user_id":""}', "AuthError"),
        (json.dumps({"user_id": "x" * 129}), "LimitReached"),
        (json.dumps({"user_id": "1", "user_info": {"a": "x" * 2000}}), "LimitReached"),
    ],
)
def test_presence_channel_data_rules(channel_data: str, kind: str) -> None:
    auth = signatures.channel_auth("key", "secret", SID, "presence-a", channel_data)
    data = {"channel": "presence-a", "auth": auth, "channel_data": channel_data}
    action = session().receive(frame("pusher:subscribe", data), 0)
    assert isinstance(action, Reply)
    assert json.loads(action.frame)["data"]["type"] == kind


@pytest.mark.parametrize("channel", ["", "a b", "x" * 201, None, 5, "#server-to-user-9"])
def test_invalid_or_reserved_channel(channel: Any) -> None:
    action = session().receive(frame("pusher:subscribe", {"channel": channel}), 0)
    assert isinstance(action, Reply)
    assert json.loads(action.frame)["event"] == "pusher:subscription_error"


def signin(s: Session, user_data: str) -> Any:
    auth = signatures.user_auth("key", "secret", SID, user_data)
    return s.receive(frame("pusher:signin", {"auth": auth, "user_data": user_data}), 0)


def test_signin_then_own_user_channel_only() -> None:
    s = session()
    action = signin(s, json.dumps({"id": "9", "watchlist": ["1", "2"]}))
    assert isinstance(action, SignIn) and action.user_id == "9" and action.watchlist == ("1", "2")
    s.user_id = "9"  # the node records it after answering signin_success
    own = s.receive(frame("pusher:subscribe", {"channel": "#server-to-user-9"}), 0)
    assert isinstance(own, Subscribe)
    other = s.receive(frame("pusher:subscribe", {"channel": "#server-to-user-8"}), 0)
    assert isinstance(other, Reply)


def test_signin_failures_are_fatal_4009() -> None:
    s = session()
    bad = s.receive(frame("pusher:signin", {"auth": "key:0", "user_data": '{"id":"1"}'}), 0)
    assert isinstance(bad, Fail) and bad.code == 4009
    no_id = signin(s, '{"name":"x"}')
    assert isinstance(no_id, Fail) and no_id.code == 4009


def test_watchlist_over_100_is_truncated() -> None:
    action = signin(session(), json.dumps({"id": "1", "watchlist": [str(i) for i in range(150)]}))
    assert (
        isinstance(action, SignIn) and len(action.watchlist) == 100 and action.watchlist_truncated
    )


def subscribed(channel: str, user: str | None = None, app: App = APP) -> Session:
    s = session(app)
    s.channels[channel] = user
    return s


def test_client_event_rules() -> None:
    s = subscribed("presence-a", "7")
    action = s.receive(frame("client-x", {"a": 1}, "presence-a"), 0)
    assert action == ClientEvent("presence-a", "client-x", {"a": 1}, "7")
    for channel in ("news", "private-encrypted-a", "private-unsubscribed"):
        t = subscribed(channel) if channel != "private-unsubscribed" else session()
        rejected = t.receive(frame("client-x", {}, channel), 0)
        assert isinstance(rejected, Fail) and rejected.code == 4301


def test_client_events_disabled() -> None:
    s = subscribed("private-a", app=App(id="1", key="key", secret="secret", client_events=False))
    action = s.receive(frame("client-x", {}, "private-a"), 0)
    assert isinstance(action, Fail) and action.code == 4301


def test_client_event_size_limit() -> None:
    s = subscribed("private-a")
    action = s.receive(frame("client-x", "x" * 1025, "private-a"), 0)
    assert isinstance(action, Fail) and action.code == 4301


def test_client_event_rate_limit_per_second_window() -> None:
    s = subscribed("private-a")
    results = [s.receive(frame("client-x", {}, "private-a"), 10.0 + i * 0.1) for i in range(3)]
    assert [type(r) for r in results] == [ClientEvent, ClientEvent, Fail]
    assert isinstance(s.receive(frame("client-x", {}, "private-a"), 11.05), ClientEvent)


def test_subscription_rate_limit_per_second_window() -> None:
    s = session(App(id="1", key="key", secret="secret", max_subscriptions_per_second=3))
    results = [s.receive(frame("pusher:subscribe", {"channel": f"c{i}"}), 10.0) for i in range(4)]
    assert [type(r) for r in results] == [Subscribe, Subscribe, Subscribe, Refuse]
    assert isinstance(results[3], Refuse)
    # pusher:error 4301 for the connection, as for client events; the channel hears it too
    assert results[3].code == 4301 and results[3].message == "Subscription rate limit reached"
    refused = json.loads(results[3].frame)
    assert refused["event"] == "pusher:subscription_error" and refused["channel"] == "c3"
    assert refused["data"]["type"] == "LimitReached" and refused["data"]["status"] == 4301
    # unsubscribing is never limited; the next window takes subscriptions again
    assert s.receive(frame("pusher:unsubscribe", {"channel": "c0"}), 10.5) == Unsubscribe("c0")
    assert isinstance(s.receive(frame("pusher:subscribe", {"channel": "c3"}), 11.0), Subscribe)


def test_channels_per_connection_cap() -> None:
    s = session(App(id="1", key="key", secret="secret", max_channels_per_connection=2))
    s.channels.update({"a": None, "b": None})  # the node records what succeeded
    refused = s.receive(frame("pusher:subscribe", {"channel": "c"}), 0)
    assert isinstance(refused, Reply)
    error = json.loads(refused.frame)
    assert error["channel"] == "c" and error["event"] == "pusher:subscription_error"
    assert error["data"] == {
        "type": "LimitReached",
        "error": "At most 2 channels per connection",
        "status": 4100,
    }
    assert isinstance(s.receive(frame("pusher:subscribe", {"channel": "a"}), 0), Subscribe)
    unlimited = session(App(id="1", key="key", secret="secret", max_channels_per_connection=0))
    unlimited.channels.update({f"c{i}": None for i in range(500)})
    assert isinstance(unlimited.receive(frame("pusher:subscribe", {"channel": "x"}), 0), Subscribe)
