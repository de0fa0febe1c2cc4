"""The management API (/api/v1, docs/apps.md) of a real ``ressonance serve``: the admin token on
every route (missing, wrong, another case, a prefix), the OpenAPI document against the routes,
an app created over HTTP that connects and publishes at once, 409/400/403/404, PATCH, DELETE,
rotation with and without grace, the dashboard cookie's Origin check, bodies that are not JSON
objects; no response carries a traceback, and no token or secret reaches the (debug) log."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.support.rest import Rest
from tests.support.server import DEFAULT_APPS, RunningServer, free_port, run_server
from tests.support.wsclient import open_ws, pusher

pytestmark = pytest.mark.timeout(60)
TOKEN = "Mgmt-Admin-Token-0123456789abcdef"  # letters of both cases: a case change differs
SECRET_KEY = "store-secret-key-0123456789-abcdefghijkl"
CONFIGURED = DEFAULT_APPS[0]
APPS = "/api/v1/apps"
# every route of http/management.py, with {id} for the app id
ROUTES = [
    ("GET", APPS),
    ("POST", APPS),
    ("GET", APPS + "/{id}"),
    ("PATCH", APPS + "/{id}"),
    ("DELETE", APPS + "/{id}"),
    ("POST", APPS + "/{id}/rotate-secret"),
    ("POST", APPS + "/{id}/enable"),
    ("POST", APPS + "/{id}/disable"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/dead-letters"),
    ("POST", "/api/v1/dead-letters/{id}/replay"),
]


class Admin:
    """Calls to the admin listener; every answer is checked for a traceback, and every secret
    an answer shows is remembered (none may reach the log)."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.secrets: set[str] = set()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        token: str | None = TOKEN,
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, parsed JSON body or the raw bytes); ``body`` bytes as they are,
        anything else as JSON."""
        raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if raw is not None else {}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        assert self.server.admin_port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.server.admin_port, timeout=10)
        try:
            conn.request(method, path, body=raw, headers=sent)
            response = conn.getresponse()
            data = response.read()
            status, got = response.status, dict(response.getheaders())
        finally:
            conn.close()
        assert b"Traceback" not in data and b'File "' not in data, data
        if data and got.get("Content-Type", "").startswith("application/json"):
            parsed = json.loads(data)
            self._remember(parsed)
            return status, got, parsed
        return status, got, data

    def _remember(self, value: Any) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                if name == "secret" and isinstance(item, str):
                    self.secrets.add(item)
                self._remember(item)
        elif isinstance(value, list):
            for item in value:
                self._remember(item)

    def create(self, **fields: Any) -> dict[str, Any]:
        status, _, body = self.call("POST", APPS, {"name": "an app", **fields})
        assert status == 201, body
        return dict(body)

    def refused(self, status: int, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """The error body of a call that must answer ``status``."""
        got, headers, error = self.call(method, path, body, **kw)
        assert got == status, (method, path, error)
        assert headers["Content-Type"].startswith("application/json")
        assert isinstance(error, dict) and error["code"] == status and error["error"], error
        return error


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    settings = {
        "admin_port": free_port(),
        "admin_token": TOKEN,
        "log_level": "debug",
    }
    with run_server(tmp_path, settings=settings, env={"RESSONANCE_SECRET_KEY": SECRET_KEY}) as srv:
        client = Admin(srv)
        yield client
    log = srv.log()
    assert "listening on" in log and "Traceback" not in log
    for secret in (TOKEN, SECRET_KEY, *client.secrets):
        assert secret not in log, f"a secret reached the log: {secret[:4]}..."


def app_dict(body: dict[str, Any]) -> dict[str, Any]:
    """What the test helpers (Rest, wsclient) need of an app."""
    return {"id": body["id"], "key": body["key"], "secret": body["secret"]}


async def connects_and_receives(server: RunningServer, app: dict[str, Any]) -> None:
    """``app``'s key connects, and an event published with its secret arrives."""
    async with pusher(server, app) as ws:
        await ws.subscribe_ok("orders")
        rest = Rest("127.0.0.1", server.port, app)
        try:
            status, body = await asyncio.to_thread(rest.trigger, "orders", "shipped", '{"n":1}')
        finally:
            rest.close()
        assert status == 200, body
        frame = await ws.expect("shipped", channel="orders")
        assert frame["data"] == {"n": 1}


async def refused_key(server: RunningServer, key: str) -> int | None:
    """The close code a connection with ``key`` gets."""
    async with open_ws(server.ws_url(key), {}, established=False) as ws:
        code, _, _ = await ws.expect_close()
        return code


def publish_status(server: RunningServer, app: dict[str, Any]) -> int:
    rest = Rest("127.0.0.1", server.port, app)
    try:
        return rest.trigger("orders", "shipped", "{}")[0]
    finally:
        rest.close()


BAD_TOKENS = [
    None,
    "wrong-token-0123456789abcdefghij",
    TOKEN.upper(),
    TOKEN.lower(),
    TOKEN[:-1],
    TOKEN[:8],
    "",
    TOKEN + "x",
]


@pytest.mark.parametrize("token", BAD_TOKENS, ids=lambda t: "none" if t is None else repr(t)[:12])
def test_every_route_wants_the_exact_token(admin: Admin, token: str | None) -> None:
    app = admin.create(name="victim")
    paths = [(method, path.replace("{id}", app["id"])) for method, path in ROUTES]
    paths.append(("GET", "/api/v1/nothing"))
    for method, path in paths:
        body = {"name": "changed"} if method in ("POST", "PATCH") else None
        error = admin.refused(401, method, path, body, token=token)
        assert TOKEN not in json.dumps(error)
    for headers in (
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Cookie": f"ressonance_admin={TOKEN}"},  # the token is not a session
    ):
        admin.refused(401, "DELETE", f"{APPS}/{app['id']}", headers=headers, token=None)
    # nothing was changed by the refused calls
    status, _, after = admin.call("GET", f"{APPS}/{app['id']}")
    assert status == 200
    assert (after["name"], after["key"], after["enabled"]) == ("victim", app["key"], True)
    assert len([a for a in admin.call("GET", APPS)[2]["apps"] if a["source"] == "store"]) == 1


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_openapi_document_describes_the_routes(admin: Admin) -> None:
    status, headers, doc = admin.call("GET", "/api/v1/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert doc["openapi"].startswith("3.1.")
    assert isinstance(doc["info"]["title"], str) and isinstance(doc["info"]["version"], str)
    refs = list(_refs(doc))
    assert refs
    for ref in refs:
        _resolve(doc, ref)
    schemes = doc["components"]["securitySchemes"]
    for requirement in doc["security"]:
        assert set(requirement) <= set(schemes)
    documented = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert documented == set(ROUTES) - {("GET", "/api/v1/openapi.json")}  # itself aside
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            assert responses and all(isinstance(code, str) for code in responses), path
            for response in responses.values():
                assert isinstance(_resolve_maybe(doc, response)["description"], str)
            if "{id}" in path:
                params = [*item.get("parameters", []), *operation.get("parameters", [])]
                params = [_resolve_maybe(doc, p) for p in params]
                assert any(
                    p["name"] == "id" and p["in"] == "path" and p["required"] for p in params
                )
    # each documented operation is routed: with a real id it answers neither 404 nor 405
    app = admin.create(name="for the document")
    for method, path in sorted(documented, key=lambda r: r[0] == "DELETE"):  # DELETE last
        body: Any = {"name": "x"} if path == APPS else ({} if method in ("POST", "PATCH") else None)
        got, _, answer = admin.call(method, path.replace("{id}", app["id"]), body)
        if path.endswith("/replay"):  # routed: an app id is no dead letter's
            assert (got, answer["error"]) == (404, "No dead letter has this id")
            continue
        assert got not in (404, 405), (method, path, got)
    # the documented schemas hold the fields the answers carry
    schemas = doc["components"]["schemas"]
    status, _, one = admin.call("GET", f"{APPS}/{CONFIGURED['id']}")
    assert set(schemas["App"]["required"]) <= set(one)
    assert set(one) <= set(schemas["App"]["properties"])
    error = admin.refused(404, "GET", f"{APPS}/nope")
    assert set(schemas["Error"]["required"]) <= set(error) <= set(schemas["Error"]["properties"])
    settable = set(schemas["AppChanges"]["properties"])
    assert settable <= set(schemas["NewApp"]["properties"]) <= set(schemas["App"]["properties"])


def _resolve_maybe(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    resolved = _resolve(doc, node["$ref"]) if "$ref" in node else node
    assert isinstance(resolved, dict)
    return resolved


def test_a_created_app_connects_and_publishes_at_once(admin: Admin) -> None:
    server = admin.server
    created = admin.create(name="Orders", max_connections=5, allowed_origins=["*"])
    assert created["source"] == "store" and created["read_only"] is False
    assert created["max_connections"] == 5 and created["allowed_origins"] == ["*"]
    assert [k["key"] for k in created["keys"]] == [created["key"]]
    asyncio.run(connects_and_receives(server, app_dict(created)))  # no wait for the poll
    chosen = admin.create(id="shop-1", key="shop-key", secret="shop-secret!")
    assert (chosen["id"], chosen["key"], chosen["secret"]) == ("shop-1", "shop-key", "shop-secret!")
    asyncio.run(connects_and_receives(server, app_dict(chosen)))
    listed = {a["id"]: a for a in admin.call("GET", APPS)[2]["apps"]}
    assert {"shop-1", created["id"], *(a["id"] for a in DEFAULT_APPS)} == set(listed)
    assert listed[CONFIGURED["id"]]["read_only"] is True
    assert listed[CONFIGURED["id"]]["source"] == "config"
    # the configured apps still work beside the stored ones
    assert publish_status(server, CONFIGURED) == 200


def test_conflicts_invalid_fields_and_read_only_apps(admin: Admin) -> None:
    admin.create(id="2001", key="dup-key")
    for body in (
        {"name": "b", "key": "dup-key"},
        {"name": "b", "id": "2001"},
        {"name": "b", "key": CONFIGURED["key"]},
        {"name": "b", "id": CONFIGURED["id"]},
    ):
        admin.refused(409, "POST", APPS, body)
    for body, field in (
        ({}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "a", "max_connections": -1}, "max_connections"),
        ({"name": "a", "max_payload_kb": "big"}, "max_payload_kb"),
        ({"name": "a", "id": "bad id"}, "id"),
        ({"name": "a", "key": "bad/key"}, "key"),
        ({"name": "a", "secret": "bad secret"}, "secret"),
        ({"name": "a", "colour": "red"}, "colour"),
    ):
        error = admin.refused(400, "POST", APPS, body)
        assert error["field"] == field, error
    error = admin.refused(400, "PATCH", f"{APPS}/2001", {"secret": "new-one"})
    assert error["field"] == "secret" and "rotate-secret" in error["error"]
    writes: list[tuple[str, str, Any]] = [
        ("PATCH", f"{APPS}/{CONFIGURED['id']}", {"name": "x"}),
        ("DELETE", f"{APPS}/{CONFIGURED['id']}", None),
        ("POST", f"{APPS}/{CONFIGURED['id']}/rotate-secret", None),
        ("POST", f"{APPS}/{CONFIGURED['id']}/disable", None),
    ]
    for method, path, body in writes:
        admin.refused(403, method, path, body)
    assert publish_status(admin.server, CONFIGURED) == 200  # untouched
    admin.refused(405, "PUT", APPS, {"name": "x"})
    admin.refused(405, "GET", f"{APPS}/2001/rotate-secret")


def test_patch_delete_and_404(admin: Admin) -> None:
    server = admin.server
    app = admin.create(name="before")
    path = f"{APPS}/{app['id']}"
    status, _, changed = admin.call("PATCH", path, {"name": "after", "max_connections": 1})
    assert status == 200
    assert (changed["name"], changed["max_connections"]) == ("after", 1)
    assert changed["key"] == app["key"] and changed["secret"] == app["secret"]
    status, _, got = admin.call("GET", path)
    assert status == 200 and got["name"] == "after" and got["max_connections"] == 1
    status, _, disabled = admin.call("POST", f"{path}/disable")
    assert status == 200 and disabled["enabled"] is False
    assert asyncio.run(refused_key(server, app["key"])) == 4003
    status, _, enabled = admin.call("POST", f"{path}/enable")
    assert status == 200 and enabled["enabled"] is True
    asyncio.run(connects_and_receives(server, app_dict(app)))
    status, _, body = admin.call("DELETE", path)
    assert (status, body) == (204, b"")
    for method, target in (
        ("GET", path),
        ("DELETE", path),
        ("PATCH", path),
        ("POST", f"{path}/rotate-secret"),
        ("POST", f"{path}/enable"),
    ):
        admin.refused(404, method, target, {} if method == "PATCH" else None)
    assert asyncio.run(refused_key(server, app["key"])) == 4001
    assert publish_status(server, app_dict(app)) == 404
    admin.refused(404, "GET", f"{APPS}/%2e%2e%2fetc")


def test_rotate_keeps_the_old_pair_for_the_grace_period(admin: Admin) -> None:
    server = admin.server
    app = admin.create(name="rotating")
    path = f"{APPS}/{app['id']}/rotate-secret"
    status, _, rotated = admin.call("POST", path, {"grace": "1h"})
    assert status == 200
    new, old = rotated["keys"]
    assert (old["key"], old["secret"]) == (app["key"], app["secret"])
    assert new["key"] == rotated["key"] != app["key"] and new["expires_at"] is None
    assert old["expires_at"] == pytest.approx(new["created_at"] + 3600, abs=1)
    asyncio.run(connects_and_receives(server, app_dict(rotated)))
    asyncio.run(connects_and_receives(server, app_dict(app)))  # the old pair, in its grace
    status, _, again = admin.call("POST", path, {"grace": 0})
    assert status == 200
    assert [k["key"] for k in again["keys"]] == [again["key"]]
    for gone in (app, rotated):
        assert asyncio.run(refused_key(server, gone["key"])) == 4001
        assert publish_status(server, app_dict(gone)) == 401
    asyncio.run(connects_and_receives(server, app_dict(again)))
    status, _, default = admin.call("POST", path)  # no body: 24 hours
    assert status == 200
    assert default["keys"][1]["expires_at"] == pytest.approx(
        default["keys"][0]["created_at"] + 86400, abs=1
    )
    for body, field in (({"grace": "31d"}, "grace"), ({"grace": "x"}, "grace"), ({"g": 1}, "g")):
        assert admin.refused(400, "POST", path, body)["field"] == field


def login_cookie(admin: Admin) -> str:
    form = urlencode({"token": TOKEN}).encode()
    status, headers, _ = admin.call(
        "POST",
        "/login",
        form,
        {"Content-Type": "application/x-www-form-urlencoded"},
        token=None,
    )
    assert status == 303 and "Set-Cookie" in headers
    return headers["Set-Cookie"].split(";")[0]


def test_a_cookie_write_needs_the_dashboards_own_origin(admin: Admin) -> None:
    cookie = login_cookie(admin)
    own = f"http://127.0.0.1:{admin.server.admin_port}"
    status, _, listed = admin.call("GET", APPS, headers={"Cookie": cookie}, token=None)
    assert status == 200 and listed["apps"]  # a read needs no Origin
    target = admin.create(name="target")
    writes = [
        ("POST", APPS, {"name": "cookie app"}),
        ("PATCH", f"{APPS}/{target['id']}", {"name": "changed"}),
        ("POST", f"{APPS}/{target['id']}/rotate-secret", None),
        ("POST", f"{APPS}/{target['id']}/disable", None),
        ("DELETE", f"{APPS}/{target['id']}", None),
    ]
    for origin in (
        None,
        "http://evil.example",
        "null",
        f"{own}.evil.example",
        f"http://127.0.0.1:{free_port()}",
        "http://localhost",
    ):
        headers = {"Cookie": cookie} | ({"Origin": origin} if origin is not None else {})
        for method, path, body in writes:
            admin.refused(403, method, path, body, headers=headers, token=None)
    status, _, unchanged = admin.call("GET", f"{APPS}/{target['id']}")
    assert status == 200
    assert (unchanged["name"], unchanged["key"], unchanged["enabled"]) == (
        "target",
        target["key"],
        True,
    )
    stored = [a for a in admin.call("GET", APPS)[2]["apps"] if a["source"] == "store"]
    assert [a["id"] for a in stored] == [target["id"]]
    headers = {"Cookie": cookie, "Origin": own}
    status, _, made = admin.call("POST", APPS, {"name": "cookie app"}, headers, token=None)
    assert status == 201 and made["name"] == "cookie app"
    status, _, _ = admin.call("DELETE", f"{APPS}/{target['id']}", headers=headers, token=None)
    assert status == 204
    forged = {"Cookie": "ressonance_admin=forged", "Origin": own}
    admin.refused(401, "POST", APPS, {"name": "x"}, headers=forged, token=None)


def test_ready_answers_200(admin: Admin) -> None:
    status, _, body = admin.call("GET", "/ready", token=None)
    assert status == 200 and body["ready"] is True
    assert not body.get("degraded")


NOT_OBJECTS = [
    b"",
    b"not json",
    b"{",
    b"[]",
    b'["name"]',
    b'"a string"',
    b"null",
    b"123",
    b"true",
    b"\xff\xfe{}",
    b'{"name": "\\ud800"}',
    b"[" * 5000 + b"]" * 5000,
]


def test_bodies_that_are_not_json_objects_are_400_body(admin: Admin) -> None:
    app = admin.create(name="target")
    for raw in NOT_OBJECTS:
        for method, path in (("POST", APPS), ("PATCH", f"{APPS}/{app['id']}")):
            error = admin.refused(400, method, path, raw)
            assert error["field"] == "body", (raw[:20], error)
        if raw:  # an empty body is no grace: the default applies
            error = admin.refused(400, "POST", f"{APPS}/{app['id']}/rotate-secret", raw)
            assert error["field"] == "body", (raw[:20], error)
    stored = [a for a in admin.call("GET", APPS)[2]["apps"] if a["source"] == "store"]
    assert [(a["id"], a["name"], a["key"]) for a in stored] == [(app["id"], "target", app["key"])]
