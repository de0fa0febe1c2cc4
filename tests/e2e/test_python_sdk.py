"""The official ``pusher`` Python SDK (pusher-http-python 3.3.x) against Ressonance, unchanged but
for host, port, key and secret (docs/protocol.md, "Protocol support"). WebSocket clients
subscribe with the SDK's own auth signatures and check what the SDK publishes arrives as it
should.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import nacl.secret
import pusher
import pusher.errors
import pusher.http
import pytest

from tests.support.server import DEFAULT_APPS, RunningServer
from tests.support.wsclient import PusherWS
from tests.support.wsclient import pusher as ws_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

APP, LIMITED, DISABLED = DEFAULT_APPS
MASTER_KEY = base64.b64encode(os.urandom(32)).decode()


def make_sdk(
    server: RunningServer, app: dict[str, Any], secret: str | None = None
) -> pusher.Pusher:
    return pusher.Pusher(
        app_id=app["id"],
        key=app["key"],
        secret=secret or app["secret"],
        host=server.host,
        port=server.port,
        ssl=False,
        timeout=5,
        encryption_master_key_base64=MASTER_KEY,
    )


def close_sdk(client: pusher.Pusher) -> None:
    for inner in (client._pusher_client, client._authentication_client):
        inner.http.session.close()


@pytest.fixture
def sdk(server: RunningServer) -> Iterator[pusher.Pusher]:
    client = make_sdk(server, APP)
    yield client
    close_sdk(client)


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking SDK call off the event loop (the WebSocket clients keep reading)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def sdk_subscribe(
    sdk: pusher.Pusher, client: PusherWS, channel: str, custom_data: Any = None
) -> dict[str, Any]:
    """Subscribe with exactly what the SDK's ``authenticate`` hands to the browser."""
    auth = sdk.authenticate(channel=channel, socket_id=client.socket_id, custom_data=custom_data)
    await client.subscribe(channel, auth["auth"], auth.get("channel_data"))
    await client.expect("pusher_internal:subscription_succeeded", channel=channel)
    return auth


async def sdk_signin(sdk: pusher.Pusher, client: PusherWS, user: dict[str, Any]) -> None:
    auth = sdk.authenticate_user(client.socket_id, user)
    await client.send("pusher:signin", {"auth": auth["auth"], "user_data": auth["user_data"]})
    frame = await client.expect("pusher:signin_success")
    assert json.loads(frame["data"]["user_data"])["id"] == user["id"]


# -- publishing ------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_trigger(server: RunningServer, sdk: pusher.Pusher) -> None:
    async with ws_client(server) as a, ws_client(server) as b:
        await a.subscribe_ok("sdk-news")
        await b.subscribe_ok("sdk-other")
        assert await call(sdk.trigger, "sdk-news", "hello", {"text": "héllo"}) == {}
        frame = await a.expect("hello", channel="sdk-news")
        assert frame["data"] == {"text": "héllo"}
        result = await call(sdk.trigger, ["sdk-news", "sdk-other"], "both", "plain string")
        assert result == {}
        assert (await a.expect("both"))["raw_data"] == "plain string"
        assert (await b.expect("both"))["raw_data"] == "plain string"


@pytest.mark.asyncio
async def test_trigger_excluding_a_socket(server: RunningServer, sdk: pusher.Pusher) -> None:
    async with ws_client(server) as origin, ws_client(server) as other:
        await origin.subscribe_ok("sdk-excl")
        await other.subscribe_ok("sdk-excl")
        await call(sdk.trigger, "sdk-excl", "e", {}, socket_id=origin.socket_id)
        await other.expect("e")
        await origin.expect_nothing(0.5, event="e")


@pytest.mark.asyncio
async def test_trigger_batch(server: RunningServer, sdk: pusher.Pusher) -> None:
    async with ws_client(server) as client:
        await client.subscribe_ok("sdk-batch")
        await sdk_subscribe(sdk, client, "private-sdk-batch")
        batch = [
            {"channel": "sdk-batch", "name": "one", "data": {"n": 1}},
            {"channel": "private-sdk-batch", "name": "two", "data": {"n": 2}},
        ]
        result = await call(sdk.trigger_batch, batch)
        assert result in ({}, {"batch": [{}, {}]}), result
        assert (await client.expect("one", channel="sdk-batch"))["data"] == {"n": 1}
        assert (await client.expect("two", channel="private-sdk-batch"))["data"] == {"n": 2}


@pytest.mark.asyncio
async def test_send_to_user(server: RunningServer, sdk: pusher.Pusher) -> None:
    async with ws_client(server) as client, ws_client(server) as other:
        await sdk_signin(sdk, client, {"id": "sdk-user", "user_info": {"name": "S"}})
        await sdk_signin(sdk, other, {"id": "someone-else"})
        # what pusher-js does after signin_success
        await client.subscribe_ok("#server-to-user-sdk-user")
        await other.subscribe_ok("#server-to-user-someone-else")
        assert await call(sdk.send_to_user, "sdk-user", "dm", {"msg": "hi"}) == {}
        frame = await client.expect("dm", channel="#server-to-user-sdk-user")
        assert frame["data"] == {"msg": "hi"}
        await other.expect_nothing(0.5, event="dm")


# -- querying --------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_channels_info(server: RunningServer, sdk: pusher.Pusher) -> None:
    async with ws_client(server) as a, ws_client(server) as b:
        await a.subscribe_ok("sdk-list-1")
        await sdk_subscribe(sdk, a, "presence-sdk-list", {"user_id": "1"})
        await sdk_subscribe(sdk, b, "presence-sdk-list", {"user_id": "2", "user_info": {"x": 1}})
        everything = await call(sdk.channels_info)
        assert {"sdk-list-1", "presence-sdk-list"} <= set(everything["channels"]), everything
        presence = await call(sdk.channels_info, "presence-sdk-", ["user_count"])
        assert presence == {"channels": {"presence-sdk-list": {"user_count": 2}}}, presence
        public = await call(sdk.channels_info, "sdk-list-")
        assert public == {"channels": {"sdk-list-1": {}}}, public


@pytest.mark.asyncio
async def test_channel_info(server: RunningServer, sdk: pusher.Pusher) -> None:
    assert await call(sdk.channel_info, "sdk-ch") == {"occupied": False}
    async with ws_client(server) as a, ws_client(server) as b:
        await a.subscribe_ok("sdk-ch")
        await b.subscribe_ok("sdk-ch")
        info = await call(sdk.channel_info, "sdk-ch", ["subscription_count"])
        assert info == {"occupied": True, "subscription_count": 2}, info
        await sdk_subscribe(sdk, a, "presence-sdk-ch", {"user_id": "1"})
        await sdk_subscribe(sdk, b, "presence-sdk-ch", {"user_id": "1"})
        info = await call(sdk.channel_info, "presence-sdk-ch", ["user_count", "subscription_count"])
        assert info["occupied"] is True and info["user_count"] == 1, info
        assert info["subscription_count"] == 2, info


@pytest.mark.asyncio
async def test_users_info(server: RunningServer, sdk: pusher.Pusher) -> None:
    async with ws_client(server) as a, ws_client(server) as b:
        await sdk_subscribe(sdk, a, "presence-sdk-users", {"user_id": "u1", "user_info": {"n": 1}})
        await sdk_subscribe(sdk, b, "presence-sdk-users", {"user_id": "u2"})
        users = await call(sdk.users_info, "presence-sdk-users")
        assert sorted(u["id"] for u in users["users"]) == ["u1", "u2"], users


@pytest.mark.asyncio
async def test_presence_subscribe_with_sdk_channel_data(
    server: RunningServer, sdk: pusher.Pusher
) -> None:
    """The SDK serialises channel_data with ``json.dumps`` defaults (spaces after separators);
    the server must verify the signature over the exact string the client sent."""
    async with ws_client(server) as a, ws_client(server) as b:
        await sdk_subscribe(sdk, a, "presence-sdk-p", {"user_id": "a", "user_info": {"k": "v"}})
        auth = sdk.authenticate("presence-sdk-p", b.socket_id, {"user_id": "b"})
        assert ", " in auth["channel_data"] or ": " in auth["channel_data"]
        await b.subscribe("presence-sdk-p", auth["auth"], auth["channel_data"])
        ok = await b.expect("pusher_internal:subscription_succeeded", channel="presence-sdk-p")
        assert ok["data"]["presence"]["count"] == 2
        assert ok["data"]["presence"]["hash"]["a"] == {"k": "v"}
        added = await a.expect("pusher_internal:member_added", channel="presence-sdk-p")
        assert added["data"]["user_id"] == "b"


# -- terminate -------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_terminate_user_connections(server: RunningServer, sdk: pusher.Pusher) -> None:
    """pusher-http-python 3.3.x posts ``terminate_user_connections`` to
    ``/users/{id}/terminate_connections`` (no ``/apps/{id}`` prefix); Ressonance takes the app
    from ``auth_key`` so it works unchanged (docs/server-sdks.md). The user's signed-in sockets
    are closed with 4009, the others stay."""
    async with (
        ws_client(server) as target,
        ws_client(server) as target2,
        ws_client(server) as bystander,
    ):
        await sdk_signin(sdk, target, {"id": "sdk-doomed"})
        await sdk_signin(sdk, target2, {"id": "sdk-doomed"})
        await sdk_signin(sdk, bystander, {"id": "sdk-safe"})
        assert await call(sdk.terminate_user_connections, "sdk-doomed") == {}
        for client in (target, target2):
            code, _reason, _frames = await client.expect_close(3)
            assert code == 4009
        assert await bystander.is_open()


@pytest.mark.asyncio
async def test_terminate_on_the_documented_path(server: RunningServer, sdk: pusher.Pusher) -> None:
    """The documented ``/apps/{id}/users/{id}/terminate_connections``, signed by the SDK's own
    request machinery (what a fixed SDK would send)."""
    async with ws_client(server) as target:
        await sdk_signin(sdk, target, {"id": "sdk-doomed-2"})
        inner = sdk._pusher_client
        path = f"/apps/{APP['id']}/users/sdk-doomed-2/terminate_connections"
        request = pusher.http.Request(inner, pusher.http.POST, path, {})
        assert await call(inner.http.send_request, request) == {}
        code, _reason, _frames = await target.expect_close(3)
        assert code == 4009


# -- encrypted channels ----------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_encrypted_channel(server: RunningServer, sdk: pusher.Pusher) -> None:
    channel = "private-encrypted-sdk"
    async with ws_client(server) as client:
        auth = await sdk_subscribe(sdk, client, channel)
        shared_secret = base64.b64decode(auth["shared_secret"])
        assert len(shared_secret) == 32
        payload = {"secret": "only for you", "n": 42}
        assert await call(sdk.trigger, channel, "sealed", payload) == {}
        frame = await client.expect("sealed", channel=channel)
        envelope = frame["data"]
        assert set(envelope) == {"ciphertext", "nonce"}, envelope
        nonce = base64.b64decode(envelope["nonce"])
        ciphertext = base64.b64decode(envelope["ciphertext"])
        assert len(nonce) == nacl.secret.SecretBox.NONCE_SIZE
        plain = nacl.secret.SecretBox(shared_secret).decrypt(ciphertext, nonce)
        assert json.loads(plain) == payload


@pytest.mark.asyncio
async def test_encrypted_channel_via_batch(server: RunningServer, sdk: pusher.Pusher) -> None:
    channel = "private-encrypted-sdk-batch"
    async with ws_client(server) as client:
        auth = await sdk_subscribe(sdk, client, channel)
        box = nacl.secret.SecretBox(base64.b64decode(auth["shared_secret"]))
        await call(sdk.trigger_batch, [{"channel": channel, "name": "sealed", "data": "text"}])
        envelope = (await client.expect("sealed", channel=channel))["data"]
        plain = box.decrypt(
            base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"])
        )
        assert plain == b"text"


@pytest.mark.asyncio
async def test_encrypted_channel_client_events_are_rejected(
    server: RunningServer, sdk: pusher.Pusher
) -> None:
    """pusher-js and the mobile SDKs refuse client events on encrypted channels ("not supported");
    the server rejects one that arrives anyway with 4301 and keeps the socket (docs/protocol.md,
    "Client event rules")."""
    channel = "private-encrypted-sdk-ce"
    async with ws_client(server) as a, ws_client(server) as b:
        await sdk_subscribe(sdk, a, channel)
        await sdk_subscribe(sdk, b, channel)
        await a.send("client-x", {"ciphertext": "AAAA", "nonce": "BBBB"}, channel=channel)
        error = await a.expect("pusher:error")
        assert error["data"]["code"] == 4301, error
        await b.expect_nothing(0.5, event="client-x")
        assert await a.is_open()


# -- errors as the SDK reports them ----------------------------------------------------------------
def test_wrong_secret(server: RunningServer) -> None:
    """The SDK raises ``PusherBadAuth`` on 401 (3.3.4 has no ``PusherAuthError``)."""
    bad = make_sdk(server, APP, secret="not-the-secret")
    try:
        with pytest.raises(pusher.errors.PusherBadAuth):
            bad.trigger("sdk-c", "e", {})
        with pytest.raises(pusher.errors.PusherBadAuth):
            bad.channels_info()
    finally:
        close_sdk(bad)


def test_payload_too_large(server: RunningServer) -> None:
    """App 1002 allows 1 KB of data: the SDK sees a 413 as ``PusherBadStatus``."""
    limited = make_sdk(server, LIMITED)
    try:
        with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
            limited.trigger("sdk-c", "e", "x" * 2048)
        assert limited.trigger("sdk-c", "e", "x" * 512) == {}
    finally:
        close_sdk(limited)


def test_disabled_app(server: RunningServer) -> None:
    disabled = make_sdk(server, DISABLED)
    try:
        with pytest.raises(pusher.errors.PusherForbidden):
            disabled.trigger("sdk-c", "e", {})
    finally:
        close_sdk(disabled)


def test_bad_request(sdk: pusher.Pusher) -> None:
    """``info=user_count`` without the ``presence-`` prefix is a 400 (docs/protocol.md, "HTTP API
    event validation")."""
    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.channels_info(attributes=["user_count"])
    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.users_info("not-presence")


def test_batch_over_10(sdk: pusher.Pusher) -> None:
    batch = [{"channel": f"sdk-b{i}", "name": "e", "data": "x"} for i in range(11)]
    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.trigger_batch(batch)
