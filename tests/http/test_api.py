"""The Pusher HTTP API (http/api.py) in process: ``Api.handle(Request)`` on a node with fake
sockets, no server. Each endpoint's answer, its validation errors, and what a publish or a
terminate does to the sockets (Pusher's HTTP API reference:
https://pusher.com/docs/channels/library_auth_reference/rest-api/)."""

from __future__ import annotations

from typing import Any

import pytest

from ressonance.exchange import Request
from tests.support.api import APP, DISABLED, InProcessApi, signed_request

EVENTS = f"/apps/{APP.id}/events"
BATCH = f"/apps/{APP.id}/batch_events"
CHANNELS = f"/apps/{APP.id}/channels"
TRIGGER = {"name": "my-event", "channel": "news", "data": '{"a":1}'}


def error(status: int, message: str) -> dict[str, Any]:
    return {"error": message, "code": status}


def event_frame(channel: str, name: str = "my-event", data: str = '{"a":1}') -> dict[str, Any]:
    return {"event": name, "channel": channel, "data": data}


# health and routing --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/health", "/up"])
def test_health(api: InProcessApi, path: str) -> None:
    reply = api.send(Request("GET", path, "", {}))
    assert (reply.status, reply.json) == (200, {"status": "ok"})


def test_root_says_what_it_is(api: InProcessApi) -> None:
    response = api.handle(Request("GET", "/", "", {}))
    assert (response.status, response.content_type) == (200, "text/plain")
    assert response.body == b"Ressonance: Pusher protocol v7 server\n"


def test_ready_then_draining_is_503_with_the_reason(api: InProcessApi) -> None:
    reply = api.send(Request("GET", "/ready", "", {}))
    assert (reply.status, reply.json) == (200, {"ready": True})
    api.node.announce_drain()
    reply = api.send(Request("GET", "/ready", "", {}))
    assert (reply.status, reply.json) == (503, {"ready": False, "reasons": ["draining"]})


def test_ready_is_503_once_the_broker_link_is_down_longer_than_node_timeout(
    api: InProcessApi,
) -> None:
    api.node.link_changed(False)
    api.clock.now += 10  # Node's default node_timeout
    assert api.send(Request("GET", "/ready", "", {})).status == 200
    api.clock.now += 1
    reply = api.send(Request("GET", "/ready", "", {}))
    assert (reply.status, reply.json) == (
        503,
        {"ready": False, "reasons": ["broker link down for 11 s"]},
    )


@pytest.mark.parametrize(
    "path", ["/nothing", "/apps/1/nothing-here", "/apps/1", "/apps/1/channels/a/b/c", "/app/key"]
)
def test_unknown_paths_are_404(api: InProcessApi, path: str) -> None:
    reply = api.send(Request("GET", path, "", {}))
    assert (reply.status, reply.json) == (404, error(404, "Not found"))


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", EVENTS, "POST"),
        ("PUT", BATCH, "POST"),
        ("POST", CHANNELS, "GET"),
        ("DELETE", f"{CHANNELS}/news", "GET"),
        ("POST", f"{CHANNELS}/presence-a/users", "GET"),
        ("GET", "/apps/1/users/u/terminate_connections", "POST"),
    ],
)
def test_the_wrong_method_is_405(api: InProcessApi, method: str, path: str, allowed: str) -> None:
    reply = api.send(Request(method, path, "", {}))
    assert (reply.status, reply.json) == (405, error(405, f"Use {allowed} for this endpoint"))


def test_an_unknown_app_id_is_404(api: InProcessApi) -> None:
    reply = api.call("POST", "/apps/9/events", TRIGGER)
    assert (reply.status, reply.json) == (404, error(404, "App '9' not found"))


def test_a_disabled_app_is_403(api: InProcessApi) -> None:
    path = f"/apps/{DISABLED.id}/events"
    reply = api.call("POST", path, TRIGGER, app=DISABLED)
    assert (reply.status, reply.json) == (403, error(403, "App is disabled"))
    reply = api.call("GET", f"/apps/{DISABLED.id}/channels", app=DISABLED)
    assert (reply.status, reply.json) == (403, error(403, "App is disabled"))


# POST /events --------------------------------------------------------------------------------
def test_trigger_reaches_the_subscribers_of_the_channel_only(api: InProcessApi) -> None:
    news, other = api.connect(), api.connect()
    api.subscribe(news, "news")
    api.subscribe(other, "other")
    reply = api.call("POST", EVENTS, TRIGGER)
    assert (reply.status, reply.json) == (200, {})
    assert news.take() == [event_frame("news")]
    assert other.take() == []


def test_trigger_to_several_channels(api: InProcessApi) -> None:
    a, b = api.connect(), api.connect()
    api.subscribe(a, "a")
    api.subscribe(b, "private-b")
    body = {"name": "e", "channels": ["a", "private-b"], "data": "x"}
    assert api.call("POST", EVENTS, body).status == 200
    assert a.take() == [event_frame("a", "e", "x")]
    assert b.take() == [event_frame("private-b", "e", "x")]


def test_data_that_is_not_a_string_is_sent_as_json_text(api: InProcessApi) -> None:
    sock = api.connect()
    api.subscribe(sock, "news")
    assert api.call("POST", EVENTS, {**TRIGGER, "data": {"a": [1, 2]}}).status == 200
    assert sock.take() == [event_frame("news", data='{"a":[1,2]}')]


def test_trigger_excludes_the_socket_id(api: InProcessApi) -> None:
    sender, receiver = api.connect(), api.connect()
    api.subscribe(sender, "news")
    api.subscribe(receiver, "news")
    body = {**TRIGGER, "socket_id": sender.session.socket_id}
    assert api.call("POST", EVENTS, body).status == 200
    assert sender.take() == []
    assert receiver.take() == [event_frame("news")]


def test_trigger_with_info(api: InProcessApi) -> None:
    for user in ("u1", "u2"):
        api.subscribe(api.connect(), "presence-room", user=user)
    api.subscribe(api.connect(), "news")
    body = {
        "name": "e",
        "channels": ["presence-room", "news"],
        "data": "{}",
        "info": "user_count,subscription_count",
    }
    reply = api.call("POST", EVENTS, body)
    assert (reply.status, reply.json) == (
        200,
        {
            "channels": {
                "presence-room": {"user_count": 2, "subscription_count": 2},
                "news": {"subscription_count": 1},
            }
        },
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"channel": "news", "data": "x"}, "name is required"),
        ({"name": "", "channel": "news", "data": "x"}, "name is required"),
        ({"name": 5, "channel": "news", "data": "x"}, "name is required"),
        ({"name": "e" * 201, "channel": "news", "data": "x"}, "name is longer than 200 characters"),
        ({"name": "e", "data": "x"}, "channel or channels is required"),
        ({"name": "e", "channels": [], "data": "x"}, "channel or channels is required"),
        ({"name": "e", "channels": "news", "data": "x"}, "channel or channels is required"),
        ({"name": "e", "channel": "news"}, "data is required"),
        ({"name": "e", "channel": "bad name", "data": "x"}, "Invalid channel name 'bad name'"),
        ({**TRIGGER, "socket_id": "1.2.3"}, "socket_id must look like 123.456"),
        ({**TRIGGER, "socket_id": 12}, "socket_id must look like 123.456"),
        ({**TRIGGER, "info": 1}, "info must be a comma-separated string"),
        ([TRIGGER], "The body must be a JSON object"),
    ],
)
def test_trigger_validation_is_400(api: InProcessApi, body: Any, message: str) -> None:
    sock = api.connect()
    api.subscribe(sock, "news")
    reply = api.call("POST", EVENTS, body)
    assert (reply.status, reply.json) == (400, error(400, message))
    assert sock.take() == []  # nothing published


def test_at_most_100_channels(api: InProcessApi) -> None:
    names = [f"c{i}" for i in range(101)]
    reply = api.call("POST", EVENTS, {"name": "e", "channels": names, "data": "x"})
    assert (reply.status, reply.json) == (400, error(400, "at most 100 channels per event"))
    assert (
        api.call("POST", EVENTS, {"name": "e", "channels": names[:100], "data": "x"}).status == 200
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "The body is not valid JSON"),
        (b'{"name": "\xff"}', "The body is not UTF-8 text"),
        (b'"a string"', "The body must be a JSON object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_400(
    api: InProcessApi, raw: bytes, message: str
) -> None:
    reply = api.send(signed_request("POST", EVENTS, raw))
    assert (reply.status, reply.json) == (400, error(400, message))


def test_an_empty_body_is_400(api: InProcessApi) -> None:
    reply = api.call("POST", EVENTS)
    assert (reply.status, reply.json) == (400, error(400, "The request needs a JSON body"))


def test_data_over_max_payload_kb_is_413(api: InProcessApi) -> None:
    """APP.max_payload_kb is 1: 1,024 bytes of data pass, 1,025 do not."""
    sock = api.connect()
    api.subscribe(sock, "news")
    reply = api.call("POST", EVENTS, {**TRIGGER, "data": "x" * 1025})
    assert (reply.status, reply.json) == (413, error(413, "data is larger than 1 KB"))
    assert sock.take() == []
    assert api.call("POST", EVENTS, {**TRIGGER, "data": "x" * 1024}).status == 200


def test_a_full_cluster_outbox_is_503_with_retry_after(api: InProcessApi) -> None:
    sock = api.connect()
    api.subscribe(sock, "news")
    api.broker.full = True
    message = "The queue to the other nodes is full (cluster link down): retry later"
    for path, body in [(EVENTS, TRIGGER), (BATCH, {"batch": [TRIGGER]})]:
        reply = api.call("POST", path, body)
        assert (reply.status, reply.json) == (503, error(503, message))
        assert reply.headers == [("Retry-After", "2")]
    assert sock.take() == []  # not delivered here either
    assert api.node.publishes_refused == 2
    assert api.call("GET", CHANNELS).status == 200  # reads still answer
    api.broker.full = False
    assert api.call("POST", EVENTS, TRIGGER).status == 200
    assert sock.take() == [event_frame("news")]


def test_a_bad_event_is_400_even_when_the_outbox_is_full(api: InProcessApi) -> None:
    api.broker.full = True
    reply = api.call("POST", EVENTS, {"channel": "news", "data": "x"})
    assert (reply.status, reply.json) == (400, error(400, "name is required"))


# POST /batch_events --------------------------------------------------------------------------
def test_batch_events_reach_each_channel(api: InProcessApi) -> None:
    a, b = api.connect(), api.connect()
    api.subscribe(a, "a")
    api.subscribe(b, "b")
    batch = [
        {"name": "e1", "channel": "a", "data": "1"},
        {"name": "e2", "channel": "b", "data": "2", "socket_id": b.session.socket_id},
        {"name": "e3", "channel": "a", "data": "3"},
    ]
    reply = api.call("POST", BATCH, {"batch": batch})
    assert (reply.status, reply.json) == (200, {})
    assert a.take() == [event_frame("a", "e1", "1"), event_frame("a", "e3", "3")]
    assert b.take() == []  # excluded by socket_id


def test_batch_events_with_info(api: InProcessApi) -> None:
    api.subscribe(api.connect(), "a")
    batch = [
        {"name": "e", "channel": "a", "data": "1", "info": "subscription_count"},
        {"name": "e", "channel": "b", "data": "2"},
    ]
    reply = api.call("POST", BATCH, {"batch": batch})
    assert (reply.status, reply.json) == (200, {"batch": [{"subscription_count": 1}, {}]})


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "batch must be a non-empty array of events"),
        ({"batch": []}, 400, "batch must be a non-empty array of events"),
        ({"batch": {"name": "e"}}, 400, "batch must be a non-empty array of events"),
        ({"batch": [TRIGGER] * 11}, 400, "batch is limited to 10 events"),
        ({"batch": [TRIGGER, "x"]}, 400, "each batch item must be an object"),
        ({"batch": [TRIGGER, {"channel": "a", "data": "x"}]}, 400, "name is required"),
        ({"batch": [{**TRIGGER, "data": "x" * 1025}]}, 413, "data is larger than 1 KB"),
    ],
)
def test_a_bad_batch_publishes_nothing(
    api: InProcessApi, body: Any, status: int, message: str
) -> None:
    sock = api.connect()
    api.subscribe(sock, "news")
    reply = api.call("POST", BATCH, body)
    assert (reply.status, reply.json) == (status, error(status, message))
    assert sock.take() == []


def test_a_batch_of_10_is_taken(api: InProcessApi) -> None:
    sock = api.connect()
    api.subscribe(sock, "news")
    assert api.call("POST", BATCH, {"batch": [TRIGGER] * 10}).status == 200
    assert sock.take() == [event_frame("news")] * 10


# GET /channels, /channels/{name}, /channels/{name}/users -------------------------------------
def test_channels_lists_the_occupied_ones(api: InProcessApi) -> None:
    assert api.call("GET", CHANNELS).json == {"channels": {}}
    sock = api.connect()
    api.subscribe(sock, "news")
    api.subscribe(sock, "private-a")
    api.subscribe(api.connect(), "presence-room", user="u1")
    reply = api.call("GET", CHANNELS)
    assert (reply.status, reply.json) == (
        200,
        {"channels": {"news": {}, "private-a": {}, "presence-room": {}}},
    )
    reply = api.call(
        "GET", CHANNELS, params={"filter_by_prefix": "presence-", "info": "user_count"}
    )
    assert reply.json == {"channels": {"presence-room": {"user_count": 1}}}
    reply = api.call("GET", CHANNELS, params={"info": "subscription_count"})
    assert reply.json["channels"]["news"] == {"subscription_count": 1}


def test_channels_user_count_without_the_presence_prefix_is_400(api: InProcessApi) -> None:
    reply = api.call("GET", CHANNELS, params={"info": "user_count"})
    message = "info=user_count needs filter_by_prefix=presence-"
    assert (reply.status, reply.json) == (400, error(400, message))


def test_one_channel(api: InProcessApi) -> None:
    path = f"{CHANNELS}/news"
    assert api.call("GET", path).json == {"occupied": False}
    api.subscribe(api.connect(), "news")
    api.subscribe(api.connect(), "news")
    reply = api.call("GET", path, params={"info": "subscription_count"})
    assert (reply.status, reply.json) == (200, {"occupied": True, "subscription_count": 2})


def test_one_presence_channel_counts_users_not_sockets(api: InProcessApi) -> None:
    for user in ("u1", "u1", "u2"):
        api.subscribe(api.connect(), "presence-room", user=user)
    reply = api.call(
        "GET", f"{CHANNELS}/presence-room", params={"info": "user_count,subscription_count"}
    )
    assert reply.json == {"occupied": True, "user_count": 2, "subscription_count": 3}


def test_a_cache_channel_tells_its_last_event(api: InProcessApi) -> None:
    path = f"{CHANNELS}/cache-news"
    assert api.call("GET", path, params={"info": "cache"}).json == {"occupied": False}
    body = {"name": "e", "channel": "cache-news", "data": "d"}
    assert api.call("POST", EVENTS, body).status == 200
    api.clock.now += 100
    reply = api.call("GET", path, params={"info": "cache"})
    ttl = APP.cache_ttl - 100
    assert reply.json == {"occupied": False, "cache": {"event": "e", "data": "d", "ttl": ttl}}


@pytest.mark.parametrize(
    ("channel", "info", "message"),
    [
        ("news", "user_count", "user_count is only available for presence channels"),
        ("news", "cache", "cache is only available for cache channels"),
        ("bad%20name", "", "Invalid channel name 'bad name'"),
    ],
)
def test_one_channel_errors_are_400(
    api: InProcessApi, channel: str, info: str, message: str
) -> None:
    reply = api.call("GET", f"{CHANNELS}/{channel}", params={"info": info})
    assert (reply.status, reply.json) == (400, error(400, message))


def test_presence_users(api: InProcessApi) -> None:
    path = f"{CHANNELS}/presence-room/users"
    assert api.call("GET", path).json == {"users": []}
    for user in ("u1", "u2", "u1"):
        api.subscribe(api.connect(), "presence-room", user=user)
    reply = api.call("GET", path)
    assert reply.status == 200
    assert sorted(u["id"] for u in reply.json["users"]) == ["u1", "u2"]
    assert len(reply.json["users"]) == 2
    reply = api.call("GET", path, params={"with_user_info": "1"})
    assert sorted(reply.json["users"], key=lambda u: u["id"]) == [
        {"id": "u1", "user_info": {"name": "u1"}},
        {"id": "u2", "user_info": {"name": "u2"}},
    ]


@pytest.mark.parametrize("channel", ["news", "private-a", "cache-a"])
def test_users_of_a_channel_that_is_not_presence_is_400(api: InProcessApi, channel: str) -> None:
    reply = api.call("GET", f"{CHANNELS}/{channel}/users")
    message = "Users are only available for presence channels"
    assert (reply.status, reply.json) == (400, error(400, message))


# POST /users/{id}/terminate_connections ------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/apps/1/users/u1/terminate_connections", "/users/u1/terminate_connections"]
)
def test_terminate_closes_every_socket_of_the_user_only(api: InProcessApi, path: str) -> None:
    first, second, bystander = api.connect(), api.connect(), api.connect()
    api.sign_in(first, "u1")
    api.sign_in(second, "u1")
    api.sign_in(bystander, "u2")
    reply = api.call("POST", path, {})
    assert (reply.status, reply.json) == (200, {})
    for sock in (first, second):
        assert sock.closed == (4009, "Connection terminated by the app")
        assert sock.frames == [
            {
                "event": "pusher:error",
                "data": {"code": 4009, "message": "Connection terminated by the app"},
            }
        ]
    assert bystander.closed is None


def test_terminate_of_an_unknown_user_is_ok(api: InProcessApi) -> None:
    reply = api.call("POST", "/apps/1/users/nobody/terminate_connections")
    assert (reply.status, reply.json) == (200, {})
