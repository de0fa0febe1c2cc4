"""The Pusher HTTP API (docs/protocol.md, "HTTP API reference") over raw, hand-signed HTTP.

Requests are signed here from the spec (not with an SDK) so a signing mistake on either side
shows up; WebSocket clients check that what the API reports and publishes is what they see.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.support.server import DEFAULT_APPS, RunningServer
from tests.support.wsclient import Closed, PusherWS, pusher

APP, LIMITED, DISABLED = DEFAULT_APPS
pytestmark = pytest.mark.timeout(60)


# -- signing (docs/protocol.md, "HTTP API authentication") -----------------------------------------
def string_to_sign(method: str, path: str, query: dict[str, str]) -> str:
    pairs = "&".join(f"{k}={v}" for k, v in sorted((k.lower(), v) for k, v in query.items()))
    return f"{method}\n{path}\n{pairs}"


def auth_signature(secret: str, method: str, path: str, query: dict[str, str]) -> str:
    to_sign = string_to_sign(method, path, query)
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def test_signer_matches_the_documented_vector() -> None:
    body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    md5 = hashlib.md5(body).hexdigest()
    assert md5 == "ec365a775a4cd0599faeb73354201b6f"
    query = {
        "auth_key": "278d425bdf160c739803",
        "auth_timestamp": "1353088179",
        "auth_version": "1.0",
        "body_md5": md5,
    }
    assert (
        auth_signature("7ad3773142a6692b25b8", "POST", "/apps/3/events", query)
        == "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    )


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def assert_clean(self) -> None:
        """Error bodies explain themselves without leaking Python internals."""
        text = self.raw.decode("utf-8", "replace")
        assert "Traceback" not in text and 'File "' not in text, text
        # docs/protocol.md "HTTP API": errors are JSON {"error": reason, "code": status}
        body = json.loads(self.raw)
        assert isinstance(body.get("error"), str) and body["error"], body
        assert body.get("code") == self.status, body


class Api:
    """Signed requests to one server over one keep-alive ``http.client`` connection."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=10)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        *,
        app: dict[str, Any] | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
        body_md5: str | None = None,
        drop: Iterable[str] = (),
        raw_body: bytes | None = None,
        sign_empty_body: bool = False,
    ) -> Response:
        app = app or APP
        if raw_body is not None:
            raw = raw_body
        else:
            raw = b"" if body is None else json.dumps(body).encode()
        query = {
            "auth_key": app["key"],
            "auth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
            "auth_version": "1.0",
            **(params or {}),
        }
        if raw or sign_empty_body:
            query["body_md5"] = body_md5 or hashlib.md5(raw).hexdigest()
        query["auth_signature"] = auth_signature(secret or app["secret"], method, path, query)
        for key in drop:
            query.pop(key, None)
        headers = {"Content-Type": "application/json"} if raw else {}
        self.conn.request(method, f"{path}?{urlencode(query)}", body=raw or None, headers=headers)
        resp = self.conn.getresponse()
        result = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        if result.status != 200:
            result.assert_clean()
        return result

    async def acall(self, *args: Any, **kwargs: Any) -> Response:
        return await asyncio.to_thread(self.call, *args, **kwargs)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def api(server: RunningServer) -> Any:
    client = Api(server)
    yield client
    client.close()


EVENTS = f"/apps/{APP['id']}/events"
BATCH = f"/apps/{APP['id']}/batch_events"
CHANNELS = f"/apps/{APP['id']}/channels"


def channel_path(name: str, suffix: str = "") -> str:
    return f"{CHANNELS}/{quote(name, safe='')}{suffix}"


# -- POST /events ---------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_trigger_one_channel(server: RunningServer, api: Api) -> None:
    async with pusher(server) as client:
        await client.subscribe_ok("news")
        data = json.dumps({"headline": 'ünïcode & "quotes"', "n": 1})
        resp = await api.acall(
            "POST", EVENTS, {"name": "breaking", "channel": "news", "data": data}
        )
        assert resp.status == 200, resp
        assert resp.json == {}
        frame = await client.expect("breaking", channel="news")
        assert frame["raw_data"] == data, "data must be delivered as the exact string published"


@pytest.mark.asyncio
async def test_trigger_several_channels(server: RunningServer, api: Api) -> None:
    async with pusher(server) as a, pusher(server) as b:
        await a.subscribe_ok("multi-a")
        await b.subscribe_ok("multi-b")
        body = {"name": "both", "channels": ["multi-a", "multi-b", "multi-empty"], "data": "1"}
        resp = await api.acall("POST", EVENTS, body)
        assert resp.status == 200 and resp.json == {}, resp
        assert (await a.expect("both", channel="multi-a"))["raw_data"] == "1"
        assert (await b.expect("both", channel="multi-b"))["raw_data"] == "1"


@pytest.mark.asyncio
async def test_trigger_excludes_socket_id(server: RunningServer, api: Api) -> None:
    async with pusher(server) as origin, pusher(server) as other:
        await origin.subscribe_ok("excl")
        await other.subscribe_ok("excl")
        body = {"name": "e", "channel": "excl", "data": "{}", "socket_id": origin.socket_id}
        resp = await api.acall("POST", EVENTS, body)
        assert resp.status == 200, resp
        await other.expect("e", channel="excl")
        await origin.expect_nothing(0.5, event="e")


@pytest.mark.asyncio
async def test_trigger_with_info(server: RunningServer, api: Api) -> None:
    async with (
        pusher(server) as a,
        pusher(server) as b,
        pusher(server) as c,
    ):
        await a.subscribe_ok("info-pub")
        await b.subscribe_ok("info-pub")
        await a.subscribe_presence("presence-info", "u1")
        await b.subscribe_presence("presence-info", "u2")
        await c.subscribe_presence("presence-info", "u2")  # same user twice: counted once
        body = {
            "name": "e",
            "channels": ["info-pub", "presence-info"],
            "data": "{}",
            "info": "user_count,subscription_count",
        }
        resp = await api.acall("POST", EVENTS, body)
        assert resp.status == 200, resp
        channels = resp.json["channels"]
        assert channels["presence-info"]["user_count"] == 2, resp.json
        assert channels["info-pub"]["subscription_count"] == 2, resp.json
        assert "user_count" not in channels["info-pub"], resp.json


@pytest.mark.asyncio
async def test_trigger_without_info_is_empty_object(api: Api) -> None:
    resp = await api.acall("POST", EVENTS, {"name": "e", "channel": "nobody", "data": "x"})
    assert resp.status == 200
    assert resp.json == {}
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers


@pytest.mark.asyncio
async def test_trigger_to_a_user(server: RunningServer, api: Api) -> None:
    """``sendToUser`` in the SDKs triggers on ``#server-to-user-{id}`` via /events."""
    async with pusher(server) as client:
        await client.signin("user-7")
        await client.subscribe_ok("#server-to-user-user-7")
        body = {"name": "dm", "channel": "#server-to-user-user-7", "data": '"hi"'}
        resp = await api.acall("POST", EVENTS, body)
        assert resp.status == 200, resp
        frame = await client.expect("dm", channel="#server-to-user-user-7")
        assert frame["raw_data"] == '"hi"'


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"channel": "c", "data": "x"}, "no name"),
        ({"name": "e", "channel": "c"}, "no data"),
        ({"name": "e", "data": "x"}, "no channel"),
        ({"name": "e", "channels": [], "data": "x"}, "empty channels"),
        ({"name": "e", "channel": "bad channel", "data": "x"}, "invalid channel"),
        ({"name": "e", "channel": "c" * 201, "data": "x"}, "channel too long"),
        ({"name": "e", "channels": "c", "data": "x"}, "channels not a list"),
        ({"name": 5, "channel": "c", "data": "x"}, "name not a string"),
        ({"name": "e" * 201, "channel": "c", "data": "x"}, "name over 200 characters"),
        ([], "array body"),
        ("text", "string body"),
    ],
)
def test_trigger_bad_body_is_400(api: Api, body: Any, why: str) -> None:
    resp = api.call("POST", EVENTS, body)
    assert resp.status == 400, (why, resp)


def test_trigger_more_than_100_channels_is_400(api: Api) -> None:
    channels = [f"c{i}" for i in range(101)]
    resp = api.call("POST", EVENTS, {"name": "e", "channels": channels, "data": "x"})
    assert resp.status == 400, resp
    ok = api.call("POST", EVENTS, {"name": "e", "channels": channels[:100], "data": "x"})
    assert ok.status == 200, ok


def test_non_json_body_is_400_with_a_reason(api: Api) -> None:
    resp = api.call("POST", EVENTS, raw_body=b"name=e&channel=c&data=x")
    assert resp.status == 400, resp
    assert resp.raw.strip(), "a 400 must say why"
    resp = api.call("POST", EVENTS, raw_body=b'{"name":"e",')
    assert resp.status == 400 and resp.raw.strip(), resp
    resp = api.call("POST", EVENTS, raw_body=b"\xff\xfe\x00")
    assert resp.status == 400 and resp.raw.strip(), resp


def test_a_lone_surrogate_in_an_event_is_400(api: Api) -> None:
    """A name or data with an unpaired \\ud800 escape could never be sent to a socket or to
    the other nodes of a cluster: refused like bad JSON."""
    for body in (
        b'{"name":"e\\ud800","channel":"c","data":"x"}',
        b'{"name":"e","channel":"c","data":"\\udfff"}',
    ):
        resp = api.call("POST", EVENTS, raw_body=body)
        assert resp.status == 400 and resp.raw.strip(), resp
    ok = api.call("POST", EVENTS, raw_body=b'{"name":"e","channel":"c","data":"\\ud83d\\ude00"}')
    assert ok.status == 200, ok


def test_data_over_max_payload_kb_is_413(server: RunningServer, api: Api) -> None:
    big = "x" * (10 * 1024 + 1)
    assert api.call("POST", EVENTS, {"name": "e", "channel": "c", "data": big}).status == 413
    assert (
        api.call("POST", EVENTS, {"name": "e", "channel": "c", "data": "x" * 10_000}).status == 200
    )
    # per-app limit: app 1002 allows 1 KB
    path = f"/apps/{LIMITED['id']}/events"
    body = {"name": "e", "channel": "c", "data": "x" * 1500}
    assert api.call("POST", path, body, app=LIMITED).status == 413
    body = {"name": "e", "channel": "c", "data": "x" * 900}
    assert api.call("POST", path, body, app=LIMITED).status == 200


def test_body_over_max_request_kb_is_413(server: RunningServer) -> None:
    """max_request_kb (default 1024): a bigger body is refused before it is parsed."""
    api = Api(server)
    try:
        channels = ["c"] * 10
        body = {"name": "e", "channels": channels, "data": "x" * (1100 * 1024)}
        try:
            resp = api.call("POST", EVENTS, body)
        except (ConnectionError, http.client.HTTPException):
            return  # closed without reading it all: acceptable for an oversized body
        assert resp.status == 413, resp
    finally:
        api.close()


# -- POST /batch_events ---------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_batch_events(server: RunningServer, api: Api) -> None:
    async with pusher(server) as client, pusher(server) as other:
        await client.subscribe_ok("batch-a")
        await client.subscribe_ok("batch-b")
        await other.subscribe_ok("batch-a")
        batch = [
            {"name": "one", "channel": "batch-a", "data": "1"},
            {"name": "two", "channel": "batch-b", "data": "2"},
            {"name": "three", "channel": "batch-a", "data": "3", "socket_id": client.socket_id},
        ]
        resp = await api.acall("POST", BATCH, {"batch": batch})
        assert resp.status == 200, resp
        assert resp.json in ({}, {"batch": [{}, {}, {}]}), resp.json
        assert (await client.expect("one", channel="batch-a"))["raw_data"] == "1"
        assert (await client.expect("two", channel="batch-b"))["raw_data"] == "2"
        await client.expect_nothing(0.4, event="three")
        assert (await other.expect("one"))["raw_data"] == "1"
        assert (await other.expect("three"))["raw_data"] == "3"


@pytest.mark.asyncio
async def test_batch_events_with_info(server: RunningServer, api: Api) -> None:
    async with pusher(server) as client:
        await client.subscribe_presence("presence-batch", "u1")
        await client.subscribe_ok("batch-info")
        batch = [
            {"name": "a", "channel": "presence-batch", "data": "1", "info": "user_count"},
            {"name": "b", "channel": "batch-plain", "data": "2"},
            {"name": "c", "channel": "batch-info", "data": "3", "info": "subscription_count"},
        ]
        resp = await api.acall("POST", BATCH, {"batch": batch})
        assert resp.status == 200, resp
        items = resp.json["batch"]
        assert len(items) == 3, resp.json
        assert items[0]["user_count"] == 1, resp.json
        assert items[1] == {}, resp.json
        assert items[2]["subscription_count"] == 1, resp.json


def test_batch_of_10_is_accepted_and_11_is_400(api: Api) -> None:
    batch = [{"name": "e", "channel": f"b{i}", "data": "x"} for i in range(11)]
    assert api.call("POST", BATCH, {"batch": batch[:10]}).status == 200
    assert api.call("POST", BATCH, {"batch": batch}).status == 400


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"batch": "x"},
        {"batch": [{"name": "e", "data": "x"}]},
        {"batch": [{"name": "e", "channel": "bad channel", "data": "x"}]},
    ],
    ids=["no-batch", "not-a-list", "no-channel", "invalid-channel"],
)
def test_bad_batch_is_400(api: Api, body: Any) -> None:
    assert api.call("POST", BATCH, body).status == 400


def test_batch_data_over_max_payload_kb_is_413(api: Api) -> None:
    batch = [
        {"name": "e", "channel": "c", "data": "x"},
        {"name": "e", "channel": "c", "data": "x" * (10 * 1024 + 1)},
    ]
    assert api.call("POST", BATCH, {"batch": batch}).status == 413


# -- GET /channels --------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_channels_lists_occupied_only(server: RunningServer, api: Api) -> None:
    async with pusher(server) as a, pusher(server) as b:
        await a.subscribe_ok("list-one")
        await a.subscribe_ok("list-two")
        await b.subscribe_ok("list-two")
        await a.subscribe_ok("other-three")
        await a.subscribe_ok("list-gone")
        await a.send("pusher:unsubscribe", {"channel": "list-gone"})
        await asyncio.sleep(0.2)
        resp = await api.acall("GET", CHANNELS, params={"filter_by_prefix": "list-"})
        assert resp.status == 200, resp
        assert resp.json == {"channels": {"list-one": {}, "list-two": {}}}, resp.json
        everything = (await api.acall("GET", CHANNELS)).json["channels"]
        assert {"list-one", "list-two", "other-three"} <= set(everything), everything
        assert "list-gone" not in everything


@pytest.mark.asyncio
async def test_channels_user_count_on_presence(server: RunningServer, api: Api) -> None:
    async with pusher(server) as a, pusher(server) as b:
        await a.subscribe_presence("presence-list-1", "u1")
        await b.subscribe_presence("presence-list-1", "u2")
        await b.subscribe_presence("presence-list-2", "u2")
        params = {"filter_by_prefix": "presence-list-", "info": "user_count"}
        resp = await api.acall("GET", CHANNELS, params=params)
        assert resp.status == 200, resp
        assert resp.json == {
            "channels": {"presence-list-1": {"user_count": 2}, "presence-list-2": {"user_count": 1}}
        }


@pytest.mark.parametrize(
    "params",
    [{"info": "user_count"}, {"info": "user_count", "filter_by_prefix": "private-"}],
    ids=["no-prefix", "private-prefix"],
)
def test_channels_user_count_without_presence_prefix_is_400(
    api: Api, params: dict[str, str]
) -> None:
    resp = api.call("GET", CHANNELS, params=params)
    assert resp.status == 400, resp


def test_get_with_body_md5_of_empty_body_is_accepted(api: Api) -> None:
    """The Python SDK signs ``body_md5`` of the empty body on every GET."""
    resp = api.call("GET", CHANNELS, sign_empty_body=True)
    assert resp.status == 200, resp


# -- GET /channels/{name} -------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_channel_info(server: RunningServer, api: Api) -> None:
    resp = await api.acall("GET", channel_path("ch-info"))
    assert resp.status == 200 and resp.json == {"occupied": False}, resp
    async with pusher(server) as a, pusher(server) as b:
        await a.subscribe_ok("ch-info")
        await b.subscribe_ok("ch-info")
        resp = await api.acall("GET", channel_path("ch-info"))
        assert resp.status == 200 and resp.json == {"occupied": True}, resp
        resp = await api.acall(
            "GET", channel_path("ch-info"), params={"info": "subscription_count"}
        )
        assert resp.json == {"occupied": True, "subscription_count": 2}, resp.json
    await asyncio.sleep(0.2)
    resp = await api.acall("GET", channel_path("ch-info"), params={"info": "subscription_count"})
    assert resp.json["occupied"] is False, resp.json


@pytest.mark.asyncio
async def test_presence_channel_info(server: RunningServer, api: Api) -> None:
    async with pusher(server) as a, pusher(server) as b, pusher(server) as c:
        await a.subscribe_presence("presence-ch", "u1")
        await b.subscribe_presence("presence-ch", "u2")
        await c.subscribe_presence("presence-ch", "u2")
        resp = await api.acall(
            "GET", channel_path("presence-ch"), params={"info": "user_count,subscription_count"}
        )
        assert resp.status == 200, resp
        assert resp.json["occupied"] is True
        assert resp.json["user_count"] == 2, resp.json
        assert resp.json["subscription_count"] == 3, resp.json


def test_user_count_on_a_non_presence_channel_is_400(api: Api) -> None:
    resp = api.call("GET", channel_path("plain"), params={"info": "user_count"})
    assert resp.status == 400, resp
    resp = api.call("GET", channel_path("private-plain"), params={"info": "user_count"})
    assert resp.status == 400, resp


@pytest.mark.asyncio
async def test_cache_channel_info(server: RunningServer, api: Api) -> None:
    resp = await api.acall("GET", channel_path("cache-info"), params={"info": "cache"})
    assert resp.status == 200, resp
    assert "cache" not in resp.json or not resp.json["cache"], resp.json
    async with pusher(server) as client:
        await client.subscribe("cache-info")
        await client.expect("pusher_internal:subscription_succeeded", channel="cache-info")
        body = {"name": "last", "channel": "cache-info", "data": '{"v":1}'}
        assert (await api.acall("POST", EVENTS, body)).status == 200
        await client.expect("last", channel="cache-info", skip_others=True)
        resp = await api.acall("GET", channel_path("cache-info"), params={"info": "cache"})
        assert resp.status == 200, resp
        cache = resp.json["cache"]
        assert cache["data"] == '{"v":1}', resp.json
        assert isinstance(cache["ttl"], int) and 0 < cache["ttl"] <= 1800, resp.json


def test_cache_info_on_a_non_cache_channel_is_400(api: Api) -> None:
    resp = api.call("GET", channel_path("plain"), params={"info": "cache"})
    assert resp.status == 400, resp


def test_channel_info_with_invalid_name_is_400(api: Api) -> None:
    resp = api.call("GET", channel_path("bad channel"))
    assert resp.status == 400, resp


# -- GET /channels/{name}/users -------------------------------------------------------------------
@pytest.mark.asyncio
async def test_presence_users(server: RunningServer, api: Api) -> None:
    async with pusher(server) as a, pusher(server) as b, pusher(server) as c:
        await a.subscribe_presence("presence-users", "u1", {"name": "one"})
        await b.subscribe_presence("presence-users", "u2")
        await c.subscribe_presence("presence-users", "u2")
        resp = await api.acall("GET", channel_path("presence-users", "/users"))
        assert resp.status == 200, resp
        users = resp.json["users"]
        assert sorted(u["id"] for u in users) == ["u1", "u2"], resp.json
    resp = await api.acall("GET", channel_path("presence-empty", "/users"))
    assert resp.status == 200 and resp.json == {"users": []}, resp


@pytest.mark.parametrize("channel", ["plain", "private-x", "cache-x"])
def test_users_on_a_non_presence_channel_is_400(api: Api, channel: str) -> None:
    resp = api.call("GET", channel_path(channel, "/users"))
    assert resp.status == 400, resp


# -- POST /users/{id}/terminate_connections -------------------------------------------------------
async def closed_within(client: PusherWS, timeout: float) -> int | None:
    try:
        code, _reason, _frames = await client.expect_close(timeout)
    except TimeoutError:
        return None
    return code or -1


@pytest.mark.asyncio
async def test_terminate_user_connections(server: RunningServer, api: Api) -> None:
    async with (
        pusher(server) as target1,
        pusher(server) as target2,
        pusher(server) as bystander,
        pusher(server) as anonymous,
    ):
        await target1.signin("doomed")
        await target2.signin("doomed")
        await bystander.signin("safe")
        path = f"/apps/{APP['id']}/users/doomed/terminate_connections"
        resp = await api.acall("POST", path, {})
        assert resp.status == 200, resp
        assert resp.json == {}, resp.json
        for target in (target1, target2):
            code = await closed_within(target, 3)
            assert code is not None, "signed-in connection not terminated"
            # 4009 "connection is unauthorized": pusher-js stays disconnected (docs/protocol.md)
            assert code == 4009, code
        assert await bystander.is_open()
        assert await anonymous.is_open()


def test_terminate_unknown_user_is_ok(api: Api) -> None:
    resp = api.call("POST", f"/apps/{APP['id']}/users/nobody/terminate_connections", {})
    assert resp.status == 200 and resp.json == {}, resp


def test_terminate_without_body_is_ok(api: Api) -> None:
    """Some SDKs post no body at all."""
    resp = api.call("POST", f"/apps/{APP['id']}/users/nobody/terminate_connections")
    assert resp.status == 200, resp


@pytest.mark.asyncio
async def test_terminate_on_the_bare_users_path(server: RunningServer, api: Api) -> None:
    """``/users/{id}/terminate_connections`` without ``/apps/{id}`` (what pusher-http-python
    3.3.x sends): the app is the one of ``auth_key`` (docs/server-sdks.md)."""
    async with pusher(server) as target:
        await target.signin("bare-path")
        assert (await api.acall("POST", "/users/bare-path/terminate_connections", {})).status == 200
        assert await closed_within(target, 3) == 4009


def test_bare_users_path_needs_a_valid_signature(api: Api) -> None:
    path = "/users/bare-path/terminate_connections"
    assert api.call("POST", path, {}, secret="wrong").status == 401
    unknown = {"id": "0", "key": "no-such-key", "secret": "x"}
    assert api.call("POST", path, {}, app=unknown).status in (401, 404)
    assert api.call("POST", path, {}, app=DISABLED).status == 403


# -- authentication -------------------------------------------------------------------------------
TRIGGER = {"name": "e", "channel": "auth-c", "data": "x"}


def test_wrong_secret_is_401(api: Api) -> None:
    assert api.call("POST", EVENTS, TRIGGER, secret="wrong").status == 401
    assert api.call("GET", CHANNELS, secret="wrong").status == 401


def test_other_apps_secret_is_401(api: Api) -> None:
    assert api.call("POST", EVENTS, TRIGGER, secret=LIMITED["secret"]).status == 401


def test_other_apps_key_is_401(api: Api) -> None:
    """The key must belong to the app in the path."""
    resp = api.call("POST", EVENTS, TRIGGER, app={**LIMITED, "id": APP["id"]})
    assert resp.status == 401, resp


@pytest.mark.parametrize("skew", [-601, 601, -3600])
def test_stale_timestamp_is_401(api: Api, skew: int) -> None:
    resp = api.call("POST", EVENTS, TRIGGER, timestamp=int(time.time()) + skew)
    assert resp.status == 401, resp


@pytest.mark.parametrize("skew", [-500, 500])
def test_timestamp_within_600s_is_accepted(api: Api, skew: int) -> None:
    assert api.call("POST", EVENTS, TRIGGER, timestamp=int(time.time()) + skew).status == 200


def test_body_md5_mismatch_is_401(api: Api) -> None:
    resp = api.call("POST", EVENTS, TRIGGER, body_md5=hashlib.md5(b"other").hexdigest())
    assert resp.status == 401, resp


def test_body_md5_missing_is_401(api: Api) -> None:
    resp = api.call("POST", EVENTS, TRIGGER, drop=["body_md5"])
    assert resp.status == 401, resp


@pytest.mark.parametrize("param", ["auth_key", "auth_timestamp", "auth_version", "auth_signature"])
def test_missing_auth_param_is_401(api: Api, param: str) -> None:
    resp = api.call("POST", EVENTS, TRIGGER, drop=[param])
    assert resp.status == 401, resp


def test_tampered_query_is_401(server: RunningServer) -> None:
    """A parameter added after signing breaks the signature."""
    query = {"auth_key": APP["key"], "auth_timestamp": str(int(time.time())), "auth_version": "1.0"}
    query["auth_signature"] = auth_signature(APP["secret"], "GET", CHANNELS, query)
    query["filter_by_prefix"] = "presence-"
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", f"{CHANNELS}?{urlencode(query)}")
        assert conn.getresponse().status == 401
    finally:
        conn.close()


def test_unknown_app_id_is_404(api: Api) -> None:
    resp = api.call("POST", "/apps/999999/events", TRIGGER, app={**APP, "id": "999999"})
    assert resp.status == 404, resp


def test_disabled_app_is_403(api: Api) -> None:
    resp = api.call("POST", f"/apps/{DISABLED['id']}/events", TRIGGER, app=DISABLED)
    assert resp.status == 403, resp
    resp = api.call("GET", f"/apps/{DISABLED['id']}/channels", app=DISABLED)
    assert resp.status == 403, resp


def test_unknown_endpoint_is_404(api: Api) -> None:
    assert api.call("GET", f"/apps/{APP['id']}/nothing-here").status == 404


def test_wrong_method_is_404_or_405(api: Api) -> None:
    assert api.call("GET", EVENTS).status in (404, 405)
    assert api.call("POST", CHANNELS, {}).status in (404, 405)


# -- transport ------------------------------------------------------------------------------------
def test_keep_alive(server: RunningServer) -> None:
    api = Api(server)
    try:
        first = api.call("POST", EVENTS, TRIGGER)
        sock = api.conn.sock
        second = api.call("GET", CHANNELS)
        third = api.call("GET", "/apps/999999/channels", app={**APP, "id": "999999"})
        fourth = api.call("GET", channel_path("auth-c"))
        assert (first.status, second.status, third.status, fourth.status) == (200, 200, 404, 200)
        assert api.conn.sock is sock, "the connection was not kept alive"
    finally:
        api.close()


def test_pipelined_requests(server: RunningServer) -> None:
    """Two requests written back to back on one socket get two answers, in order."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        seen = b""
        deadline = time.monotonic() + 5
        while seen.count(b"HTTP/1.1 ") < 2 and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            seen += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3})", seen) == [b"200", b"404"], seen


def test_health(server: RunningServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_terminated_socket_gets_nothing_more(server: RunningServer, api: Api) -> None:
    async with pusher(server) as client:
        await client.signin("term-2")
        await client.subscribe_ok("after-term")
        resp = await api.acall("POST", f"/apps/{APP['id']}/users/term-2/terminate_connections")
        assert resp.status == 200, resp
        with pytest.raises(Closed):
            while True:
                await client.recv_event(3)
