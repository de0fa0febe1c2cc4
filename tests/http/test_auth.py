"""Authentication of HTTP API requests (http/auth.py) through ``Api.handle``: the key, the
signature, the body's MD5, the timestamp window, the app of the path, and the replay guard
(docs/security.md). Each refusal is a 401 with its reason, and publishes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode

import pytest

from ressonance.exchange import Request
from tests.node.fakes import FakeSocket
from tests.support.api import APP, NOW, OTHER, InProcessApi, Reply, resign, signed_request

EVENTS = f"/apps/{APP.id}/events"
TRIGGER = {"name": "my-event", "channel": "news", "data": "{}"}
BAD_SIGNATURE = "Invalid signature: check the app secret and the signed string"
BAD_KEY = "Unknown or missing auth_key"
EXPIRED = (
    "Timestamp expired: auth_timestamp must be within 600 s of the server time (check the clock)"
)


def refused(reply: Reply, message: str) -> None:
    assert (reply.status, reply.json) == (401, {"error": message, "code": 401})


def with_query(request: Request, **changes: str | None) -> Request:
    """``request`` with query parameters changed (None drops one), not signed again."""
    params = dict(parse_qsl(request.query))
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return replace(request, query=urlencode(params))


@pytest.fixture
def listener(api: InProcessApi) -> Iterator[FakeSocket]:
    """A socket on ``news``: a refused publish must not reach it."""
    sock = api.connect()
    api.subscribe(sock, "news")
    yield sock
    assert sock.take() == [], "a refused request published"


def test_a_signed_request_is_accepted(api: InProcessApi) -> None:
    assert api.call("POST", EVENTS, TRIGGER).status == 200


# the key -----------------------------------------------------------------------------------
def test_another_apps_key_and_secret_are_401(api: InProcessApi, listener: object) -> None:
    refused(api.call("POST", EVENTS, TRIGGER, app=OTHER), BAD_KEY)


def test_a_missing_key_is_401(api: InProcessApi, listener: object) -> None:
    request = with_query(signed_request("POST", EVENTS, TRIGGER), auth_key=None)
    refused(api.send(request), BAD_KEY)


def test_an_unknown_key_on_the_bare_users_path_is_401(api: InProcessApi) -> None:
    unknown = replace(APP, key="nobody")
    reply = api.call("POST", "/users/u/terminate_connections", {}, app=unknown)
    refused(reply, BAD_KEY)


# the signature -----------------------------------------------------------------------------
def test_a_wrong_secret_is_401(api: InProcessApi, listener: object) -> None:
    refused(api.call("POST", EVENTS, TRIGGER, secret="wrong"), BAD_SIGNATURE)
    refused(api.call("GET", f"/apps/{APP.id}/channels", secret="wrong"), BAD_SIGNATURE)


def test_a_missing_signature_is_401(api: InProcessApi, listener: object) -> None:
    request = with_query(signed_request("POST", EVENTS, TRIGGER), auth_signature=None)
    refused(api.send(request), "Missing auth_signature")


def test_a_parameter_changed_after_signing_is_401(api: InProcessApi) -> None:
    request = signed_request("GET", f"/apps/{APP.id}/channels", params={"info": "x"})
    refused(api.send(with_query(request, filter_by_prefix="presence-")), BAD_SIGNATURE)
    refused(api.send(with_query(request, info="user_count")), BAD_SIGNATURE)


def test_a_signature_in_capitals_is_accepted(api: InProcessApi) -> None:
    request = signed_request("POST", EVENTS, TRIGGER)
    signature = dict(parse_qsl(request.query))["auth_signature"]
    assert api.send(with_query(request, auth_signature=signature.upper())).status == 200


@pytest.mark.parametrize("version", ["2.0", "1", ""])
def test_an_auth_version_other_than_1_0_is_401(api: InProcessApi, version: str) -> None:
    request = resign(signed_request("POST", EVENTS, TRIGGER), auth_version=version)
    refused(api.send(request), "Unsupported auth_version (expected 1.0)")


# the body ------------------------------------------------------------------------------------
def test_a_forged_body_is_401(api: InProcessApi, listener: object) -> None:
    """The body is swapped after signing: body_md5 no longer matches."""
    request = signed_request("POST", EVENTS, TRIGGER)
    forged = replace(request, body=b'{"name":"evil","channel":"news","data":"{}"}')
    refused(api.send(forged), "body_md5 does not match the body")


def test_a_forged_body_with_its_own_md5_is_401(api: InProcessApi, listener: object) -> None:
    """body_md5 is signed: replacing it to match a forged body breaks the signature."""
    forged_body = b'{"name":"evil","channel":"news","data":"{}"}'
    forged_md5 = dict(parse_qsl(signed_request("POST", EVENTS, forged_body).query))["body_md5"]
    request = with_query(signed_request("POST", EVENTS, TRIGGER), body_md5=forged_md5)
    refused(api.send(replace(request, body=forged_body)), BAD_SIGNATURE)


def test_a_body_without_body_md5_is_401(api: InProcessApi, listener: object) -> None:
    request = resign(with_query(signed_request("POST", EVENTS, TRIGGER), body_md5=None))
    refused(api.send(request), "Missing body_md5 for a request with a body")


def test_body_md5_in_capitals_is_accepted(api: InProcessApi) -> None:
    request = signed_request("POST", EVENTS, TRIGGER)
    md5 = dict(parse_qsl(request.query))["body_md5"]
    assert api.send(resign(request, body_md5=md5.upper())).status == 200


def test_a_get_with_the_md5_of_an_empty_body_is_accepted(api: InProcessApi) -> None:
    empty_md5 = "d41d8cd98f00b204e9800998ecf8427e"
    request = resign(signed_request("GET", f"/apps/{APP.id}/channels"), body_md5=empty_md5)
    assert api.send(request).status == 200


# the timestamp -------------------------------------------------------------------------------
@pytest.mark.parametrize("skew", [-600, 0, 600])
def test_a_timestamp_within_600_s_is_accepted(api: InProcessApi, skew: int) -> None:
    assert api.call("POST", EVENTS, TRIGGER, timestamp=NOW + skew).status == 200


@pytest.mark.parametrize("skew", [-601, 601, -86400])
def test_an_expired_timestamp_is_401(api: InProcessApi, listener: object, skew: int) -> None:
    refused(api.call("POST", EVENTS, TRIGGER, timestamp=NOW + skew), EXPIRED)


def test_the_window_follows_the_server_clock(api: InProcessApi) -> None:
    request = signed_request("POST", EVENTS, TRIGGER)
    api.clock.now = NOW + 601
    refused(api.send(request), EXPIRED)


@pytest.mark.parametrize("stamp", ["", "abc", "1.5", "-1", "²", "1" * 21])
def test_an_invalid_timestamp_is_401(api: InProcessApi, stamp: str) -> None:
    request = resign(signed_request("POST", EVENTS, TRIGGER), auth_timestamp=stamp)
    refused(api.send(request), "Missing or invalid auth_timestamp")


# the app of the path -------------------------------------------------------------------------
def test_a_request_signed_for_one_app_sent_to_another_is_401(
    api: InProcessApi, listener: object
) -> None:
    request = signed_request("POST", EVENTS, TRIGGER)
    refused(api.send(replace(request, path=f"/apps/{OTHER.id}/events")), BAD_KEY)


def test_the_path_is_signed(api: InProcessApi) -> None:
    """Signed by app 2 for app 1's path, sent to app 2's path: the signature does not match."""
    request = signed_request("POST", EVENTS, TRIGGER, app=OTHER)
    refused(api.send(replace(request, path=f"/apps/{OTHER.id}/events")), BAD_SIGNATURE)


def test_another_app_publishes_only_to_its_own_channels(api: InProcessApi) -> None:
    mine = api.connect()
    api.subscribe(mine, "news")
    reply = api.call("POST", f"/apps/{OTHER.id}/events", TRIGGER, app=OTHER)
    assert reply.status == 200
    assert mine.take() == []


# the replay guard ----------------------------------------------------------------------------
def test_a_replayed_post_is_401_when_the_guard_is_on() -> None:
    api = InProcessApi(replay_guard=100)
    sock = api.connect()
    api.subscribe(sock, "news")
    request = signed_request("POST", EVENTS, TRIGGER)
    assert api.send(request).status == 200
    refused(
        api.send(request),
        "Replayed request: this auth_signature was already used (replay_guard is on; "
        "each request needs its own signature)",
    )
    assert sock.events() == ["my-event"]  # published once
    assert api.call("POST", EVENTS, TRIGGER, timestamp=NOW + 1).status == 200  # a new one


def test_a_replayed_get_is_served_with_the_guard_on() -> None:
    """A GET only reads: it is not claimed (docs/security.md)."""
    api = InProcessApi(replay_guard=100)
    request = signed_request("GET", f"/apps/{APP.id}/channels")
    assert [api.send(request).status for _ in range(2)] == [200, 200]


def test_a_replayed_post_is_served_when_the_guard_is_off(api: InProcessApi) -> None:
    request = signed_request("POST", EVENTS, TRIGGER)
    assert [api.send(request).status for _ in range(2)] == [200, 200]


def test_a_full_guard_refuses_what_it_cannot_check() -> None:
    """With room for one signature, an older request than the one kept cannot be checked."""
    api = InProcessApi(replay_guard=1)
    assert api.call("POST", EVENTS, TRIGGER).status == 200
    reply = api.call("POST", EVENTS, TRIGGER, timestamp=NOW - 10)
    refused(
        reply,
        "auth_timestamp is older than the replay guard can check while it is full "
        "(replay_guard_size): sign with the current time",
    )


def test_a_refused_signature_is_not_claimed() -> None:
    """A request refused for its signature does not use up the guard's memory of it."""
    api = InProcessApi(replay_guard=100)
    request = signed_request("POST", EVENTS, TRIGGER)
    refused(api.send(replace(request, body=b"{}")), "body_md5 does not match the body")
    assert api.send(request).status == 200
