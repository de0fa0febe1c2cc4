"""The HTTP API (http/api.py, http/auth.py) with arbitrary requests: methods, paths, query
strings, auth parameters (``auth_timestamp`` of unicode digits or 5,000 digits, a non-ASCII
``body_md5``), bodies of odd JSON or bytes that are not UTF-8; often correctly signed, so that
what comes after the signature check runs too.

- ``Api.handle`` always returns a response with a documented status (200, 400, 401, 403, 404,
  405, 413); never an exception (a 500 and a traceback in the server).
- A correctly signed request is never a 401; a request with a bad ``auth_timestamp`` always is.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ressonance.apps.static import StaticAppStore
from ressonance.exchange import Request, Response
from ressonance.http.api import Api
from ressonance.models import App
from ressonance.node.node import Node
from ressonance.protocol import signatures
from ressonance.scaling.memory import MemoryBroker
from tests.fuzz.jsonish import json_text, odd_value, splice
from tests.fuzz.wire import Recorder, strict_json

pytestmark = pytest.mark.fuzz

NOW = 1_700_000_000
APP = App(id="1", key="key", secret="secret", max_payload_kb=1)
DISABLED = App(id="2", key="off", secret="off-secret", enabled=False)
APPS = {APP.id: APP, DISABLED.id: DISABLED}
DOCUMENTED = {200, 400, 401, 403, 404, 405, 413}

CHANNELS = ["news", "private-a", "presence-b", "private-cache-c", "#server-to-user-u", "a" * 201]
LATIN1 = st.text(st.characters(max_codepoint=0xFF), max_size=40)  # what the reader decodes
ARABIC_INDIC = {ord("0") + i: 0x660 + i for i in range(10)}
BAD_TIMESTAMPS = [
    "²",
    str(NOW).translate(ARABIC_INDIC),  # str.isdigit and int accept them
    "1" * 5000,
    "9" * 25,
    "-1",
    " 1700000000",
    "1700000000.0",
    "0x10",
    "",
    str(NOW - 601),
    str(NOW + 601),
]


def handle(request: Request) -> Response:
    """A fresh node and API per request (nothing carried over from one example to the next)."""

    async def go() -> Response:
        node = Node(MemoryBroker(), clock=lambda: float(NOW))
        await node.start()
        subscriber = Recorder(set())  # what a publish delivers must be strict JSON
        node.connect(subscriber, APP)
        sid = subscriber.session.socket_id
        for channel in ("news", "private-a"):
            auth = signatures.channel_auth(APP.key, APP.secret, sid, channel)
            data = {"channel": channel, "auth": auth}
            node.receive(subscriber, json.dumps({"event": "pusher:subscribe", "data": data}))
        assert len(subscriber.session.channels) == 2, subscriber.frames
        api = Api(node, StaticAppStore(APPS.values()), clock=lambda: float(NOW))
        return await api.handle(request)

    response = asyncio.run(go())
    assert response.status in DOCUMENTED, (response.status, response.body[:300])
    if response.content_type == "application/json":
        strict_json(response.body)
    return response


@st.composite
def segments(draw: st.DrawFn) -> str:
    """A path segment: a channel or user name, escaped or not, or anything."""
    name = draw(st.sampled_from(CHANNELS) | LATIN1)
    return quote(name, safe="") if draw(st.booleans()) else name


@st.composite
def routes(draw: st.DrawFn) -> tuple[str, str]:
    """(method, path): every route, unknown apps, the wrong method, or any path."""
    app_id = draw(st.sampled_from(["1", "1", "1", "1", "1", "2", "9", "%31", ""]))
    a, b = draw(segments()), draw(segments())
    method, path = draw(
        st.sampled_from(
            [
                ("POST", f"/apps/{app_id}/events"),
                ("POST", f"/apps/{app_id}/batch_events"),
                ("GET", f"/apps/{app_id}/channels"),
                ("GET", f"/apps/{app_id}/channels/{a}"),
                ("GET", f"/apps/{app_id}/channels/{a}/users"),
                ("POST", f"/apps/{app_id}/users/{b}/terminate_connections"),
                ("POST", f"/users/{b}/terminate_connections"),
                ("GET", "/health"),
                ("GET", "/"),
                ("GET", f"/{a}"),
            ]
        )
    )
    if draw(st.sampled_from([False] * 7 + [True])):  # the wrong method, now and then
        method = draw(st.sampled_from(["GET", "POST", "DELETE", "PUT", "get", "PATCH"]))
    return method, path


FIELDS: list[tuple[str, list[Any]]] = [
    ("name", ["my-event", "", "e" * 201]),
    ("channel", CHANNELS),
    ("channels", [["news", "private-a"], [], ["news"] * 101, "news"]),
    ("data", ["{}", "x" * 1100, {"a": 1}]),
    ("socket_id", ["1.2", "1.2.3", "", "1.2".translate(ARABIC_INDIC)]),
    ("info", ["subscription_count", "user_count,subscription_count", "cache", ""]),
]


@st.composite
def event(draw: st.DrawFn, snippets: list[str]) -> dict[str, Any]:
    """One event of /events or of a batch: a valid one with a few fields changed or dropped,
    so that each check is reached alone, or any fields at all."""
    if draw(st.booleans()):
        out: dict[str, Any] = {"name": "my-event", "channel": "news", "data": "{}"}
        if draw(st.booleans()):
            out |= {"info": "subscription_count", "socket_id": "1.2"}
        for key, likely in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
            if draw(st.booleans()):
                out[key] = draw(odd_value(snippets, likely))
            else:
                out.pop(key, None)
        return out
    out = {}
    for key, likely in FIELDS:
        if draw(st.booleans()):
            out[key] = draw(odd_value(snippets, likely))
    return out


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """An event or batch as JSON (mangled sometimes), or bytes of any kind."""
    kind = draw(st.sampled_from(["event"] * 4 + ["batch"] * 2 + ["bytes", "utf16", "empty"]))
    snippets: list[str] = []
    if kind == "bytes":  # invalid UTF-8 often
        return draw(st.binary(max_size=300))
    if kind == "empty":
        return b""
    if kind == "batch":
        value: Any = {"batch": draw(st.lists(event(snippets), max_size=12))}
    else:
        value = draw(event(snippets))
    text = draw(json_text(value, snippets) | st.just(splice(value, snippets)))  # mangled or not
    return text.encode("utf-16" if kind == "utf16" else "utf-8", "surrogatepass")


@st.composite
def extra_params(draw: st.DrawFn) -> list[tuple[str, str]]:
    names = st.sampled_from(["info", "filter_by_prefix", "with_user_info", "x", "auth_key"])
    return draw(st.lists(st.tuples(names | LATIN1, LATIN1), max_size=4))


def signed(
    method: str, path: str, body: bytes, extra: list[tuple[str, str]], app: App = APP
) -> list[tuple[str, str]]:
    """The query pairs of a correctly signed request (as the SDKs sign)."""
    params = [("auth_key", app.key), ("auth_timestamp", str(NOW)), ("auth_version", "1.0")]
    params += [(k, v) for k, v in extra if k not in ("auth_key", "auth_timestamp", "body_md5")]
    if body:
        params.append(("body_md5", signatures.body_md5(body)))
    params.append(("auth_signature", signatures.api_signature(app.secret, method, path, params)))
    return params


PUBLISH = st.sampled_from([("POST", "/apps/1/events"), ("POST", "/apps/1/batch_events")])


@given(routes() | PUBLISH, bodies(), extra_params(), st.booleans())
def test_signed_requests_get_a_documented_status_never_401(
    route: tuple[str, str], body: bytes, extra: list[tuple[str, str]], disabled: bool
) -> None:
    """Signed by the app of the path (or, for /users/..., of the key: either app)."""
    method, path = route
    app = (
        DISABLED
        if path.startswith("/apps/2/") or (disabled and path.startswith("/users/"))
        else APP
    )
    query = urlencode(signed(method.upper(), path, body, extra, app))
    response = handle(Request(method, path, query, {}, body))
    assert response.status != 401, response.body


@given(routes(), bodies(), st.sampled_from(BAD_TIMESTAMPS) | LATIN1)
@example(("POST", "/apps/1/events"), b"{}", "²")
@example(("POST", "/apps/1/events"), b"{}", "1" * 5000)
def test_a_bad_auth_timestamp_is_401(route: tuple[str, str], body: bytes, stamp: str) -> None:
    """Digits int() refuses, 5,000 digits, signs, spaces, a clock too far off: 401."""
    method, path = route
    if stamp.isascii() and stamp.isdigit() and len(stamp) < 20 and abs(int(stamp) - NOW) <= 600:
        stamp = str(NOW + 601)
    params = signed(method, path, body, [])
    params = [(k, stamp if k == "auth_timestamp" else v) for k, v in params]
    params[-1] = ("auth_signature", signatures.api_signature(APP.secret, method, path, params))
    response = handle(Request(method, path, urlencode(params), {}, body))
    if path.startswith("/apps/1/") and response.status not in (404, 405):
        assert response.status == 401, response.body


AUTH = ["auth_key", "auth_timestamp", "auth_version", "auth_signature", "body_md5"]
auth_pairs = st.tuples(st.sampled_from(AUTH) | LATIN1, st.sampled_from(BAD_TIMESTAMPS) | LATIN1)


@given(routes(), bodies(), st.lists(auth_pairs, max_size=8), st.data())
@example(("POST", "/apps/1/events"), b"{}", [("body_md5", "é")], None)
@example(("POST", "/apps/1/events"), b"{}", [("auth_signature", "é")], None)
def test_any_query_gets_a_documented_status(
    route: tuple[str, str],
    body: bytes,
    pairs: list[tuple[str, str]],
    data: st.DataObject | None,
) -> None:
    """Auth parameters of any value, signed or not, and a query string that is not one."""
    method, path = route
    params = signed(method, path, body, [])
    params = [(k, v) for k, v in params if k not in {k2 for k2, _ in pairs}] + pairs
    query = urlencode(params)
    if data is not None and data.draw(st.booleans()):
        query = data.draw(LATIN1 | st.just("a=%ZZ&&=&%") | st.just("&" * 100))
    if data is not None and data.draw(st.booleans()):  # right after the pairs: signed again
        params.append(
            ("auth_signature", signatures.api_signature(APP.secret, method, path, params))
        )
        query = urlencode(params)
    handle(Request(method, path, query, {}, body))
