"""The opt-in replay guard (``replay_guard = true``): a captured signed HTTP request is served
once, on one node or across a cluster; the official SDKs keep working with it on
(docs/security.md "Replay guard")."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.node_runner import run_scenario
from tests.e2e.test_python_sdk import close_sdk, make_sdk
from tests.support.cluster import Cluster, run_cluster
from tests.support.rest import signed_query
from tests.support.server import DEFAULT_APPS, RunningServer, run_server
from tests.support.services import redis_server

APP = DEFAULT_APPS[0]
pytestmark = pytest.mark.timeout(90)
GUARD = {"replay_guard": True}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("guarded"), settings=GUARD) as running:
        yield running


def send(server: RunningServer, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
    """Exactly these bytes, as an attacker replaying a captured request would send them."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, f"{path}?{query}", body=body or None)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def captured(method: str, path: str, body: bytes = b"") -> str:
    return signed_query(APP["key"], APP["secret"], method, path, body)


EVENTS = f"/apps/{APP['id']}/events"
PUBLISH = json.dumps({"name": "e", "channel": "replayed", "data": "{}"}).encode()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (EVENTS, PUBLISH),
        (f"/apps/{APP['id']}/batch_events", json.dumps({"batch": [json.loads(PUBLISH)]}).encode()),
        (f"/apps/{APP['id']}/users/u1/terminate_connections", b"{}"),
    ],
    ids=["events", "batch_events", "terminate_connections"],
)
def test_a_replayed_action_is_refused(guarded: RunningServer, path: str, body: bytes) -> None:
    query = captured("POST", path, body)
    statuses = [send(guarded, "POST", path, query, body) for _ in range(5)]
    assert [s for s, _ in statuses] == [200, 401, 401, 401, 401], statuses
    assert "Replayed request" in statuses[1][1]["error"], statuses[1]
    assert "Traceback" not in guarded.log()


def test_a_query_is_not_guarded(guarded: RunningServer) -> None:
    """GET only reads: the SDKs poll it, and two polls in one second share a signature."""
    path = f"/apps/{APP['id']}/channels"
    query = captured("GET", path)
    assert [send(guarded, "GET", path, query, b"")[0] for _ in range(3)] == [200, 200, 200]


def test_each_fresh_signature_is_served(guarded: RunningServer) -> None:
    """Requests that differ (body, or a later second) each get their own signature."""
    for n in range(20):
        body = json.dumps({"name": "e", "channel": "fresh", "data": json.dumps({"n": n})})
        query = captured("POST", EVENTS, body.encode())
        assert send(guarded, "POST", EVENTS, query, body.encode())[0] == 200


def test_a_bad_signature_is_not_remembered(guarded: RunningServer) -> None:
    """Only verified signatures take room: garbage cannot fill the guard or block a request."""
    query = captured("POST", EVENTS, PUBLISH.replace(b"replayed", b"later"))
    good = query.split("auth_signature=")[1]
    forged = query.replace(good, good[::-1])
    body = PUBLISH.replace(b"replayed", b"later")
    assert send(guarded, "POST", EVENTS, forged, body)[0] == 401
    assert send(guarded, "POST", EVENTS, query, body)[0] == 200


def test_without_the_guard_a_replay_is_served(server: RunningServer) -> None:
    """The default (the Pusher scheme as specified): a replay within the window is served."""
    query = captured("POST", EVENTS, PUBLISH)
    statuses = [send(server, "POST", EVENTS, query, PUBLISH)[0] for _ in range(3)]
    assert statuses == [200, 200, 200]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("replay-cluster")
    with redis_server(tmp) as redis, run_cluster(tmp, redis.url, 2, settings=GUARD) as running:
        yield running


def test_a_request_served_by_one_node_is_refused_by_another(cluster: Cluster) -> None:
    """Shared through the broker (a ``seen`` control message per loop tick): once node 2 has
    heard from node 1 (the barrier), the replay is refused there too."""
    refused = 0
    for n in range(5):
        body = json.dumps({"name": "e", "channel": f"cluster-{n}", "data": "{}"}).encode()
        query = captured("POST", EVENTS, body)
        assert send(cluster[0], "POST", EVENTS, query, body)[0] == 200
        cluster.barrier(0, 1)
        status, answer = send(cluster[1], "POST", EVENTS, query, body)
        assert status == 401 and "Replayed" in answer["error"], (status, answer)
        refused += 1
    assert refused == 5
    cluster.assert_no_traceback()


@pytest.mark.e2e
def test_the_node_sdk_works_with_the_guard_on(guarded: RunningServer) -> None:
    """pusher-http-node signs each call with the current time: its trigger scenario (several
    triggers, with socket_id, with info) passes unchanged."""
    result = run_scenario(guarded, "sdk.mjs", "trigger")
    assert result["ok"] is True
    assert "Replayed" not in guarded.log()


@pytest.mark.e2e
def test_the_python_sdk_works_with_the_guard_on(guarded: RunningServer) -> None:
    """pusher-http-python: different calls in one second have different signatures."""
    sdk = make_sdk(guarded, APP)
    try:
        for n in range(10):
            sdk.trigger("sdk-guarded", "e", {"n": n})
            sdk.channels_info()  # the same query, polled in the same second: not guarded
        sdk.trigger_batch([{"channel": "sdk-guarded", "name": "b", "data": {"n": 1}}])
        sdk.terminate_user_connections("u1")
    finally:
        close_sdk(sdk)
    assert "Replayed" not in guarded.log()
