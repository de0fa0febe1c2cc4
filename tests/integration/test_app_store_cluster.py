"""The app store of a cluster end to end (docs/apps.md): two real ``ressonance serve`` nodes on a
private redis-server share one private PostgreSQL app store. Apps are made, rotated, disabled,
limited and deleted through node A's management API (``/api/v1/apps`` on its admin listener,
bearer token) and node B applies every change within the documented 2 s: pusher-js connects to
an app made a moment ago on the other node, both pairs of a rotation work until the grace ends,
disabled and deleted apps lose their connections on both nodes with 4003. With PostgreSQL
stopped both nodes keep serving the apps they know (a grace period still ends), ``/ready`` and
``ressonance_app_store_up`` say the store is down and writes answer 503; started again, all
catches up. No secret reaches either node's debug-level log.

The nodes and services are shared by the module (each test makes its own apps); the database
outage comes last among the behaviour tests and ends with PostgreSQL running again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import itertools
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pusher as pusher_sdk
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.node_runner import LiveScenario
from tests.support.cluster import Cluster, run_cluster
from tests.support.rest import Rest
from tests.support.server import RunningServer, free_port
from tests.support.services import PostgresService, postgres_server, redis_server
from tests.support.wsclient import BACKGROUND, PusherWS, channel_auth, open_ws, pusher

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TOKEN = f"app-store-admin-{secrets.token_hex(12)}"
SECRET_KEY = secrets.token_hex(24)  # RESSONANCE_SECRET_KEY: 48 characters, the same on both
# A configured (read-only) app beside the store's: run_cluster checks the mesh with it.
MESH_APP = {"id": "mesh", "key": "mesh-key", "secret": f"mesh-{secrets.token_hex(12)}"}
GRACE = 3.0  # seconds of a rotation's grace in these tests
APPLY = 2.0  # docs/apps.md, "Effects on live connections": on every node within 2 s
SCRIPT = "app_store.mjs"


@dataclass
class Store:
    cluster: Cluster
    postgres: PostgresService
    secrets: set[str] = field(default_factory=set)  # every secret value used, for the log test

    @property
    def nodes(self) -> list[RunningServer]:
        return self.cluster.nodes


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("app-store-cluster")
    (tmp / "redis").mkdir()
    (tmp / "postgres").mkdir()
    with redis_server(tmp / "redis") as redis, postgres_server(tmp / "postgres") as postgres:
        number = itertools.count(1)

        def settings() -> dict[str, Any]:
            return {
                "admin_port": free_port(),
                "admin_token": TOKEN,
                "app_store": postgres.url,
                "data_dir": str(tmp / f"data-n{next(number)}"),
                "log_level": "debug",  # the most a log may say: still no secret
            }

        with run_cluster(
            tmp,
            redis.url,
            size=2,
            apps=[MESH_APP],
            settings=settings,
            env={"RESSONANCE_SECRET_KEY": SECRET_KEY},
        ) as cluster:
            yield Store(cluster, postgres, {TOKEN, SECRET_KEY, MESH_APP["secret"]})


# -- the management API and the HTTP API -------------------------------------------------------
def manage(node: RunningServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request to ``node``'s admin listener with the bearer token: (status, JSON body)."""
    raw = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if raw is not None:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(node.host, node.admin_port, timeout=10)
    try:
        conn.request(method, path, body=raw, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    assert "Traceback" not in text and 'File "' not in text, text
    if not text:
        return response.status, None
    assert response.getheader("Content-Type", "").startswith("application/json"), text
    return response.status, json.loads(text)


def create(store: Store, node: RunningServer, **fields: Any) -> dict[str, Any]:
    status, record = manage(node, "POST", "/api/v1/apps", {"name": "test app", **fields})
    assert status == 201, record
    store.secrets.add(record["secret"])
    return dict(record)


def served(store: Store, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An app made through node A's management API, once both nodes serve it: its record and
    its credentials."""
    record = create(store, store.nodes[0], name=name)
    app = credentials(record)
    api_answers(store, app, 200)
    return record, app


def credentials(record: dict[str, Any]) -> dict[str, Any]:
    """The app as the test clients take it: its id and newest key and secret."""
    return {"id": record["id"], "key": record["key"], "secret": record["secret"]}


def publish(node: RunningServer, app: dict[str, Any], channel: str = "c") -> int:
    """The status of a signed ``POST /apps/{id}/events`` to ``node``'s HTTP API."""
    rest = Rest(node.host, node.port, app, timeout=5)
    try:
        status, body = rest.trigger(channel, "e", json.dumps({"n": 1}))
    finally:
        rest.close()
    assert "Traceback" not in json.dumps(body)
    return status


def ready(node: RunningServer) -> tuple[int, dict[str, Any]]:
    status, body = manage(node, "GET", "/ready")
    return status, body


def until_ready(store: Store, degraded: bool, timeout: float = 5) -> list[dict[str, Any]]:
    """Until each node's admin ``/ready`` answers 200 with (or without) ``degraded``; the
    bodies, one per node."""
    return [
        until(
            store,
            lambda n=node: ready(n),
            lambda got: got[0] == 200 and bool(got[1].get("degraded")) == degraded,
            timeout,
            f"n{i + 1} /ready {'with' if degraded else 'without'} degraded",
        )[1]
        for i, node in enumerate(store.nodes)
    ]


def until(store: Store, probe: Any, accept: Any, timeout: float, what: str) -> Any:
    return store.cluster.wait_until(probe, accept, timeout, what)


def api_answers(store: Store, app: dict[str, Any], status: int, timeout: float = APPLY) -> None:
    """Until each node answers ``status`` to a publish signed with ``app``'s key and secret."""
    for i, node in enumerate(store.nodes):
        until(
            store,
            lambda n=node: publish(n, app),
            lambda got: got == status,
            timeout,
            f"n{i + 1} to answer {status} for key {app['key']} of app {app['id']}",
        )


# -- WebSocket clients ---------------------------------------------------------------------------
async def subscription(ws: PusherWS, channel: str, signer: dict[str, Any]) -> dict[str, Any]:
    """Subscribe to the private ``channel`` with an auth signed by ``signer``'s key:secret; the
    ``subscription_succeeded`` or ``subscription_error`` frame that answers."""
    await ws.subscribe(channel, channel_auth(signer, ws.socket_id, channel))
    answers = {"pusher_internal:subscription_succeeded", "pusher:subscription_error"}
    async with asyncio.timeout(5):
        while True:
            frame = await ws.recv_event()
            if frame.get("event") in answers and frame.get("channel") == channel:
                return frame
            assert frame.get("event") in BACKGROUND, frame


async def refused(node: RunningServer, app: dict[str, Any]) -> int | None:
    """A new connection with ``app``'s key is refused: the code of its ``pusher:error`` (the
    close code must be the same)."""
    async with open_ws(node.ws_url(app["key"]), app, established=False) as ws:
        code, _reason, frames = await ws.expect_close(5)
    errors = [f["data"]["code"] for f in frames if f["event"] == "pusher:error"]
    assert not any(f["event"] == "pusher:connection_established" for f in frames), frames
    assert errors == [code], (code, frames)
    return code


async def closed_within(ws: PusherWS, since: float, bound: float) -> tuple[int | None, float]:
    """The close code the server sends ``ws`` and the seconds from ``since`` to it."""
    code, _reason, _frames = await ws.expect_close(bound + 3)
    return code, time.monotonic() - since


# -- 1. created ----------------------------------------------------------------------------------
def test_an_app_made_on_node_a_is_used_by_pusher_js_on_node_b_within_2s(store: Store) -> None:
    a, b = store.nodes
    made = time.time()
    record = create(store, a, name="made at run time")
    app = credentials(record)
    assert record["source"] == "store" and record["read_only"] is False
    deadline_ms = str(int((made + APPLY) * 1000))
    live = LiveScenario(
        dataclasses.replace(a, apps=[app]), SCRIPT, "new_app", str(b.port), deadline_ms
    )
    sdk = pusher_sdk.Pusher(
        app["id"], app["key"], app["secret"], ssl=False, host=a.host, port=a.port
    )
    try:
        started = live.wait_for("ready", timeout=20)
        sdk.trigger(started["channel"], "from-python-sdk", {"made": "on node A"})
        result = live.result(a)
    finally:
        live.kill()
    assert result["ok"] is True, result
    assert result["data"] == {"made": "on node A"}
    assert set(result["refusals"]) <= {4001}, result
    assert result["connected_at"] - made * 1000 <= APPLY * 1000, result


# -- 2. rotated ----------------------------------------------------------------------------------
def test_both_pairs_work_on_both_nodes_during_the_grace_and_only_the_new_one_after(
    store: Store,
) -> None:
    a, b = store.nodes
    record, old = served(store, "rotating")

    async def scenario() -> None:
        # Connections opened before the rotation, with the old key, on each node.
        async with pusher(a, old) as on_a, pusher(b, old) as on_b:
            path = f"/api/v1/apps/{record['id']}/rotate-secret"
            status, rotated = await asyncio.to_thread(manage, a, "POST", path, {"grace": GRACE})
            rotated_at = time.monotonic()
            assert status == 200, rotated
            store.secrets.update(k["secret"] for k in rotated["keys"])
            new = credentials(rotated)
            assert new["key"] != old["key"] and new["secret"] != old["secret"]
            assert [k["key"] for k in rotated["keys"]] == [new["key"], old["key"]]
            assert rotated["keys"][0]["expires_at"] is None
            assert rotated["keys"][1]["expires_at"] == pytest.approx(time.time() + GRACE, abs=1)

            # During the grace: both pairs sign API calls and channel auth, on both nodes.
            await asyncio.to_thread(api_answers, store, new, 200)
            for node in (a, b):
                assert await asyncio.to_thread(publish, node, old) == 200
            for ws in (on_a, on_b):
                for pair in (old, new):
                    frame = await subscription(ws, f"private-grace-{secrets.token_hex(4)}", pair)
                    assert frame["event"] == "pusher_internal:subscription_succeeded", frame
            for node in (a, b):
                for pair in (old, new):  # new connections with either key
                    async with pusher(node, pair) as fresh:
                        frame = await subscription(fresh, "private-fresh", pair)
                        assert frame["event"] == "pusher_internal:subscription_succeeded", frame
            assert time.monotonic() - rotated_at < GRACE, "the checks of the grace took too long"

            # After the grace (3 s + 2 s margin): the old pair gets 401 and subscription_error.
            left = rotated_at + GRACE + 2 - time.monotonic()
            await asyncio.to_thread(api_answers, store, old, 401, max(left, 0.1))
            assert time.monotonic() - rotated_at >= GRACE - 0.5, "the old pair ended early"
            for node in (a, b):
                assert await asyncio.to_thread(publish, node, new) == 200
                assert await refused(node, old) == 4001
            for ws in (on_a, on_b):  # open connections stay, their key is public
                frame = await subscription(ws, f"private-late-{secrets.token_hex(4)}", old)
                assert frame["event"] == "pusher:subscription_error", frame
                assert frame["data"]["status"] == 401, frame
                frame = await subscription(ws, f"private-late-{secrets.token_hex(4)}", new)
                assert frame["event"] == "pusher_internal:subscription_succeeded", frame
                assert await ws.is_open()

    asyncio.run(scenario())


# -- 3. disabled, enabled, deleted -------------------------------------------------------------
def test_disable_enable_and_delete_act_on_both_nodes(store: Store) -> None:
    a, b = store.nodes
    record, app = served(store, "switched")
    base = f"/api/v1/apps/{record['id']}"

    async def closed_on_both(method: str, path: str, want_status: int) -> None:
        async with pusher(a, app) as on_a, pusher(b, app) as on_b:
            since = time.monotonic()
            status, _ = await asyncio.to_thread(manage, a, method, path)
            assert status == want_status
            closes = await asyncio.gather(
                closed_within(on_a, since, APPLY), closed_within(on_b, since, APPLY)
            )
        for code, seconds in closes:
            assert code == 4003 and seconds <= APPLY, closes

    async def scenario() -> None:
        await closed_on_both("POST", f"{base}/disable", 200)
        for node in (a, b):
            assert await refused(node, app) == 4003
            assert await asyncio.to_thread(publish, node, app) == 403
        status, body = await asyncio.to_thread(manage, a, "POST", f"{base}/enable")
        assert (status, body["enabled"]) == (200, True)
        await asyncio.to_thread(api_answers, store, app, 200)
        for node in (a, b):
            async with pusher(node, app) as back:
                assert await back.is_open()
        await closed_on_both("DELETE", base, 204)
        await asyncio.to_thread(api_answers, store, app, 404)
        for node in (a, b):
            assert await refused(node, app) == 4001
        assert (await asyncio.to_thread(manage, b, "GET", base))[0] == 404

    asyncio.run(scenario())


# -- 4. a limit --------------------------------------------------------------------------------
def test_a_lower_max_connections_applies_at_once_on_the_other_node(store: Store) -> None:
    a, b = store.nodes
    record, app = served(store, "limited")
    path = f"/api/v1/apps/{record['id']}"

    async def scenario() -> None:
        async with pusher(b, app) as first, pusher(b, app) as second:
            status, body = await asyncio.to_thread(manage, a, "PATCH", path, {"max_connections": 1})
            assert (status, body["max_connections"]) == (200, 1)
            await until_connection(b, app, 4004)
            assert await first.is_open() and await second.is_open()  # over the limit, kept
            status, body = await asyncio.to_thread(manage, a, "PATCH", path, {"max_connections": 3})
            assert status == 200
            await until_connection(b, app, 0)

    asyncio.run(scenario())


async def until_connection(node: RunningServer, app: dict[str, Any], want: int) -> None:
    """Until a new connection to ``node`` is established (``want`` 0) or refused with ``want``
    (the code of its ``pusher:error`` and of its close)."""
    deadline = time.monotonic() + APPLY
    while (code := await refused_or_open(node, app)) != want:
        assert time.monotonic() < deadline, f"a new connection: {code}, not {want}"
        await asyncio.sleep(0.05)


async def refused_or_open(node: RunningServer, app: dict[str, Any]) -> int | None:
    """0 when a new connection is established, else the code it is refused with."""
    async with open_ws(node.ws_url(app["key"]), app, established=False) as ws:
        frame = await ws.recv_event(5)
        if frame["event"] == "pusher:connection_established":
            return 0
        code, _reason, _frames = await ws.expect_close(5)
        assert frame["event"] == "pusher:error" and frame["data"]["code"] == code, (frame, code)
        return code


# -- 5. the database down ------------------------------------------------------------------------
def test_with_postgres_down_both_nodes_serve_known_apps_and_writes_answer_503(
    store: Store,
) -> None:
    a, b = store.nodes
    record, old = served(store, "outlives the database")
    path = f"/api/v1/apps/{record['id']}"
    status, rotated = manage(a, "POST", f"{path}/rotate-secret", {"grace": "2s"})
    rotated_at = time.monotonic()
    assert status == 200, rotated
    store.secrets.add(rotated["secret"])
    app = credentials(rotated)
    api_answers(store, app, 200)
    store.postgres.stop()
    try:
        for node, body in zip((a, b), until_ready(store, degraded=True), strict=True):
            assert body["ready"] is True, body
            assert any("app store" in note for note in body["degraded"]), body
            assert scrape(node)["ressonance_app_store_up"] == 0.0
        asyncio.run(serve_across(a, b, app))
        for node in (a, b):
            for method, where, body in (
                ("POST", "/api/v1/apps", {"name": "while down"}),
                ("PATCH", path, {"max_connections": 5}),
            ):
                status, answer = manage(node, method, where, body)
                assert status == 503, answer
                assert answer["code"] == 503 and isinstance(answer["error"], str), answer
            status, listed = manage(node, "GET", "/api/v1/apps")  # what the node serves
            assert status == 200 and record["id"] in [r["id"] for r in listed["apps"]], listed
        # The rotation's grace ends on each node's clock, without the database.
        left = rotated_at + 2 + 2 - time.monotonic()
        api_answers(store, old, 401, max(left, 0.1))
        asyncio.run(serve_across(b, a, app))
    finally:
        store.postgres.start()
    for node, body in zip((a, b), until_ready(store, degraded=False), strict=True):
        assert body == {"ready": True}
        assert scrape(node)["ressonance_app_store_up"] == 1.0
    again = credentials(create(store, a, name="after the outage"))
    api_answers(store, again, 200)
    asyncio.run(serve_across(b, a, again))


async def serve_across(publisher: RunningServer, other: RunningServer, app: dict[str, Any]) -> None:
    """A client on each node gets an event published through ``publisher``."""
    channel = f"outage-{secrets.token_hex(4)}"
    async with pusher(publisher, app) as here, pusher(other, app) as there:
        for ws in (here, there):
            await ws.subscribe_ok(channel)
        deadline = time.monotonic() + APPLY  # until ``publisher`` counts ``there``'s subscription
        while True:
            assert await asyncio.to_thread(publish, publisher, app, channel) == 200
            try:
                for ws in (here, there):
                    await ws.expect("e", 0.5, channel)
                return
            except TimeoutError:
                assert time.monotonic() < deadline, "an event did not reach both nodes"


def scrape(node: RunningServer) -> dict[str, float]:
    """The unlabelled samples of ``node``'s /metrics."""
    conn = http.client.HTTPConnection(node.host, node.admin_port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200, text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


# -- the logs ---------------------------------------------------------------------------------
def test_no_secret_reaches_either_nodes_log(store: Store) -> None:
    """Runs after the others: every app secret they made or rotated (the configured app's too),
    the admin token and the sealing key, in debug-level logs. PostgreSQL trusts its local user,
    so its URL carries no password."""
    for i, node in enumerate(store.nodes):
        log = node.log()
        for value in store.secrets:
            assert value not in log, f"n{i + 1} logged a secret ({value[:4]}...)"


def test_a_database_outage_leaves_no_traceback_in_either_log(store: Store) -> None:
    """A database that goes away is an expected condition, told once by each node (``app store
    unreachable``), not a traceback. FAILS (a bug for src/, reported): asyncpg's pool logs
    ``Failed to restore the pool connection floor; retrying`` with the traceback of its failed
    connect, on logger ``asyncpg.pool``, and again at each retry while the database is down."""
    store.postgres.stop()
    try:
        until_ready(store, degraded=True)
    finally:
        store.postgres.start()
    until_ready(store, degraded=False)
    for i, node in enumerate(store.nodes):
        assert "app store unreachable" in node.log(), f"n{i + 1} did not say the store was down"
    store.cluster.assert_no_traceback()
