"""The admin listener of a real server: the token on every admin endpoint (wrong, forged,
missing), the login cookie, /metrics figures against what the test did (parsed with
prometheus-client's parser), /ready while draining and while the broker is down, cluster-wide
figures on a 2-node Redis cluster in two regions, and no secret in a debug-level log."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import Cluster, run_cluster
from tests.support.rest import Rest
from tests.support.server import DEFAULT_APPS, RunningServer, free_port, run_server
from tests.support.services import Service, redis_server
from tests.support.wsclient import pusher

TOKEN = "test-admin-token-0123456789"
APP = DEFAULT_APPS[0]


def admin_settings(**extra: Any) -> dict[str, Any]:
    return {"admin_port": free_port(), "admin_token": TOKEN, **extra}


def admin_call(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def scrape(server: RunningServer, headers: dict[str, str] | None = None) -> dict[str, float]:
    """Every sample of /metrics: 'name{a="x",b="y"}' (labels sorted) -> value."""
    status, _, body = admin_call(server, "GET", "/metrics", headers)
    assert status == 200, body
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def total(samples: dict[str, float], name: str) -> float:
    """The sum of ``name``'s samples, whatever their labels (app_id or none)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with run_server(tmp_path, settings=admin_settings()) as running:
        yield running


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-token-0123456789abc"),
        bearer(TOKEN + "x"),
        {"Authorization": f"Basic {TOKEN}"},
        {"Cookie": "ressonance_admin=forged-session-id"},
        {"Cookie": f"ressonance_admin={TOKEN}"},  # the token is not a session
    ],
)
def test_admin_endpoints_refuse_a_missing_wrong_or_forged_token(
    server: RunningServer, headers: dict[str, str]
) -> None:
    for path in ("/api/overview", "/api/apps", f"/api/apps/{APP['id']}"):
        status, _, body = admin_call(server, "GET", path, headers)
        assert status == 401, (path, body)
        assert json.loads(body)["code"] == 401
    status, _, body = admin_call(
        server, "POST", f"/api/apps/{APP['id']}/publish", headers, b'{"channel":"a"}'
    )
    assert status == 401
    status, found, _ = admin_call(server, "GET", "/", headers)
    assert (status, found["Location"]) == (303, "/login")


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(server: RunningServer) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, _ = admin_call(
        server, "POST", "/login", form, urlencode({"token": "nope"}).encode()
    )
    assert (status, headers["Location"]) == (303, "/login?error=1")
    assert "Set-Cookie" not in headers
    status, headers, _ = admin_call(
        server, "POST", "/login", form, urlencode({"token": TOKEN}).encode()
    )
    assert (status, headers["Location"]) == (303, "/")
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie
    session = {"Cookie": cookie.split(";")[0]}
    status, _, body = admin_call(server, "GET", "/api/apps", session)
    assert status == 200
    assert {a["id"] for a in json.loads(body)["apps"]} == {a["id"] for a in DEFAULT_APPS}
    status, _, page = admin_call(server, "GET", "/", session)
    assert status == 200 and b"<html" in page.lower()
    status, headers, _ = admin_call(server, "POST", "/logout", session)
    assert (status, headers["Location"]) == (303, "/login")
    status, _, _ = admin_call(server, "GET", "/api/apps", session)
    assert status == 401


def test_public_admin_paths_and_no_path_escape(server: RunningServer) -> None:
    assert admin_call(server, "GET", "/health")[0] == 200
    assert admin_call(server, "GET", "/ready")[0] == 200
    assert admin_call(server, "GET", "/login")[0] == 200
    assert admin_call(server, "GET", "/metrics")[0] == 200
    for path in ("/static/../../config.py", "/static/%2e%2e/server.py", "/static/nope.js"):
        assert admin_call(server, "GET", path)[0] == 404, path
    # the admin API is not on the public port, nor the Pusher API on the admin one
    public = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    public.request("GET", "/api/overview", headers=bearer())
    assert public.getresponse().status == 404
    public.close()
    assert admin_call(server, "POST", f"/apps/{APP['id']}/events", bearer(), b"{}")[0] == 404


def test_metrics_behind_the_token_when_asked(tmp_path: Path) -> None:
    with run_server(tmp_path, settings=admin_settings(admin_metrics_auth=True)) as server:
        assert admin_call(server, "GET", "/metrics")[0] == 401
        assert admin_call(server, "GET", "/metrics", bearer("x" * 20))[0] == 401
        assert "ressonance_connections" in scrape(server, bearer())


async def _clients_and_publishes(server: RunningServer, clients: int, publishes: int) -> float:
    """``clients`` subscribers of "news", ``publishes`` events to them; the frames the node
    counted as sent for those publishes (subscription_count events aside)."""
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(pusher(server)) for _ in range(clients)]
        for ws in sockets:
            await ws.subscribe_ok("news")
        await asyncio.to_thread(
            eventually, lambda: total(scrape(server), "ressonance_connections") == clients
        )
        await asyncio.sleep(0.2)  # the subscription_count events of the joins went out
        before = total(scrape(server), "ressonance_messages_sent_total")
        rest = Rest("127.0.0.1", server.port, APP)
        try:
            for i in range(publishes):
                status, _ = await asyncio.to_thread(rest.trigger, "news", "tick", json.dumps(i))
                assert status == 200
        finally:
            rest.conn.close()
        for ws in sockets:
            for _ in range(publishes):
                await ws.expect("tick")
        return total(scrape(server), "ressonance_messages_sent_total") - before


def test_metrics_count_what_the_clients_did(server: RunningServer) -> None:
    before = scrape(server)
    assert before["ressonance_connections"] == 0
    sent = asyncio.run(_clients_and_publishes(server, clients=4, publishes=3))
    assert sent == 4 * 3  # a fan-out to 4 counts 4
    eventually(lambda: scrape(server)["ressonance_connections"] == 0)
    after = scrape(server)
    assert after["ressonance_connections_opened_total"] == 4
    assert after['ressonance_messages_received_total{source="api"}'] == 3
    assert after['ressonance_http_requests_total{endpoint="events",status="200"}'] == 3
    assert after['ressonance_bytes_sent_total{transport="ws"}'] > 0
    assert after['ressonance_bytes_received_total{transport="http"}'] > 0
    assert sum(v for k, v in after.items() if k.startswith("ressonance_connections_closed")) == 4
    assert after["ressonance_publish_latency_seconds_count"] == 3
    assert after["ressonance_cluster_nodes"] == 1
    # a publish signed with the wrong secret, and a handshake for an unknown key
    rest = Rest("127.0.0.1", server.port, {**APP, "secret": "wrong"})
    assert rest.trigger("news", "x", "{}")[0] == 401
    rest.conn.close()

    async def unknown_key() -> None:
        async with pusher(server, {**APP, "key": "no-such-key"}, established=False) as ws:
            await ws.expect("pusher:error")

    asyncio.run(unknown_key())
    errors = scrape(server)
    assert errors['ressonance_http_requests_total{endpoint="events",status="401"}'] == 1
    assert errors['ressonance_errors_total{code="4001"}'] == 1


def test_metrics_with_app_labels(tmp_path: Path) -> None:
    settings = admin_settings(metrics_app_labels=True)
    with run_server(tmp_path, settings=settings) as server:
        asyncio.run(_clients_and_publishes(server, clients=2, publishes=1))
        samples = scrape(server)
        assert samples[f'ressonance_connections_opened_total{{app_id="{APP["id"]}"}}'] == 2
        assert f'ressonance_messages_sent_total{{app_id="{APP["id"]}"}}' in samples
        assert "ressonance_connections_opened_total" not in samples  # no unlabelled total


def test_ready_is_503_while_draining(tmp_path: Path) -> None:
    with run_server(tmp_path, settings=admin_settings()) as server:
        # a client that never answers the close: the drain waits for it
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        raw.sendall(
            (
                f"GET /app/{APP['key']}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ).encode()
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 101")
        server.process.send_signal(signal.SIGTERM)

        def draining() -> bool:
            with contextlib.suppress(OSError):
                status, _, body = admin_call(server, "GET", "/ready")
                return status == 503 and "draining" in json.loads(body)["reasons"]
            return False

        eventually(draining, timeout=5)
        raw.close()
        server.process.wait(timeout=15)


def test_ready_503_while_the_broker_is_down_and_cluster_figures(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    with (
        redis_server(tmp_path / "redis") as redis,
        run_cluster(
            tmp_path,
            redis.url,
            2,
            settings=lambda: admin_settings(node_timeout=3),
            regions=["eu", "us"],
        ) as cluster,
    ):
        nodes = [cluster[0], cluster[1]]
        _cluster_figures(cluster, nodes)
        _broker_down(redis, nodes[0])


def _cluster_figures(cluster: Cluster, nodes: list[RunningServer]) -> None:
    async def one_on_each() -> None:
        async with pusher(nodes[0]), pusher(nodes[1]), pusher(nodes[1]):
            for node in nodes:
                await asyncio.to_thread(
                    eventually,
                    lambda node=node: (
                        scrape(node).get('ressonance_cluster_connections{region="eu"}') == 1
                        and scrape(node).get('ressonance_cluster_connections{region="us"}') == 2
                    ),
                    8,
                )
                samples = scrape(node)
                assert samples["ressonance_cluster_nodes"] == 2
                assert samples['ressonance_cluster_node_connections{node_id="n1",region="eu"}'] == 1
                assert samples['ressonance_cluster_node_connections{node_id="n2",region="us"}'] == 2
            status, _, body = admin_call(nodes[0], "GET", "/api/overview", bearer())
            overview = json.loads(body)
            assert status == 200
            assert overview["cluster"]["connections"] == 3
            assert overview["cluster"]["regions"] == {"eu": 1, "us": 2}
            assert {n["id"] for n in overview["nodes"]} == {"n1", "n2"}
            # heartbeats carry the sender's clock: the broker's latency is measured
            assert scrape(nodes[0])["ressonance_broker_latency_seconds_count"] > 0

    asyncio.run(one_on_each())


def _broker_down(redis: Service, node: RunningServer) -> None:
    redis.stop()

    def unready() -> bool:
        status, _, body = admin_call(node, "GET", "/ready")
        reasons = json.loads(body).get("reasons", [])
        return status == 503 and any("broker link down" in r for r in reasons)

    eventually(unready, timeout=10)
    assert scrape(node)["ressonance_broker_up"] == 0
    public = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
    public.request("GET", "/ready")
    assert public.getresponse().status == 503  # the public port's /ready says the same
    public.close()


def test_no_secret_reaches_a_debug_level_log(tmp_path: Path) -> None:
    settings = admin_settings(log_level="debug")
    with run_server(tmp_path, settings=settings) as server:
        asyncio.run(_clients_and_publishes(server, clients=1, publishes=1))
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        admin_call(server, "POST", "/login", form, urlencode({"token": TOKEN}).encode())
        admin_call(server, "POST", "/login", form, b"token=wrong-guess-123456")
        admin_call(server, "GET", "/api/overview", bearer())
        rest = Rest("127.0.0.1", server.port, {**APP, "secret": "wrong"})
        rest.trigger("news", "x", "{}")
        rest.conn.close()
        log = server.log()
    for secret in (TOKEN, APP["secret"], "wrong-guess-123456", "auth_signature="):
        assert secret not in log, secret


def test_soketi_compatible_families(tmp_path: Path) -> None:
    with run_server(tmp_path, settings=admin_settings(metrics_compat="soketi")) as server:
        asyncio.run(_clients_and_publishes(server, clients=2, publishes=2))
        eventually(lambda: total(scrape(server), "soketi_connected") == 0)
        samples = scrape(server)
        labels = f'{{app_id="{APP["id"]}",port="{server.port}"}}'
        assert samples[f"soketi_new_connections_total{labels}"] == 2
        assert samples[f"soketi_new_disconnections_total{labels}"] == 2
        assert samples[f"soketi_http_calls_received_total{labels}"] == 2
        assert samples[f"soketi_ws_messages_sent_total{labels}"] >= 4
        assert samples[f"soketi_ws_messages_received_total{labels}"] >= 2  # the subscribes
        for name in ("socket_received_bytes", "socket_transmitted_bytes", "http_received_bytes"):
            assert samples[f"soketi_{name}{labels}"] > 0, name  # no _total, as in Soketi
        assert samples[f'soketi_process_resident_memory_bytes{{port="{server.port}"}}'] > 0
        assert "ressonance_connections" in samples  # our own families stay
