"""The client libraries users have, against a cluster on a private redis-server: pusher-js on
different nodes with the Node and the Python SDK publishing through another one, and pusher-js
behind nginx (deploy/nginx/ressonance.conf) through a rolling restart (SIGTERM → 4200).

The pusher-js side is tests/e2e/js/cluster_pusher_js.mjs, run by tests/e2e/node_runner.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pusher as pusher_sdk
import pytest

from tests.e2e.node_runner import LiveScenario
from tests.support.cluster import run_cluster
from tests.support.nginx import CONFIG, run_nginx, site_config
from tests.support.services import Service, redis_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCRIPT = "cluster_pusher_js.mjs"
DOC = Path(__file__).resolve().parents[2] / "docs" / "cluster.md"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as service:
        yield service


def test_pusher_js_on_two_nodes_gets_events_from_both_sdks_on_a_third(
    tmp_path: Path, redis: Service
) -> None:
    with run_cluster(tmp_path, redis.url) as cluster:
        n1, n2, n3 = cluster.nodes
        live = LiveScenario(n3, SCRIPT, "two_nodes", str(n1.port), str(n2.port))
        try:
            ready = live.wait_for("ready", timeout=30)
            app = n3.app
            client = pusher_sdk.Pusher(
                app_id=app["id"],
                key=app["key"],
                secret=app["secret"],
                host=n3.host,
                port=n3.port,
                ssl=False,
                timeout=5,
            )
            client.trigger(ready["channel"], "from-python-sdk", {"sdk": "python"})
            result = live.result(n3)
        finally:
            live.kill()
        cluster.assert_no_traceback()
    assert result["ok"] is True, result
    assert result["node_sdk"] == [{"sdk": "node"}] * 2
    assert result["python_sdk"] == [{"sdk": "python"}] * 2
    assert len(set(result["socket_ids"])) == 2


def test_sigterm_behind_nginx_moves_clients_to_the_other_node_and_loses_no_event(
    tmp_path: Path, redis: Service
) -> None:
    clients = 6
    with (
        run_cluster(tmp_path, redis.url, size=2) as cluster,
        run_nginx(tmp_path, [node.port for node in cluster.nodes]) as proxy,
    ):
        front = proxy.front(cluster[0].apps)
        live = LiveScenario(front, SCRIPT, "drain_via_proxy", str(clients))
        try:
            live.wait_for("ready", timeout=30)
            cluster.terminate(0)
            result = live.result(front)
        finally:
            live.kill()
        stopped = cluster[0].process.returncode
        failure = f"{result}\n{cluster.logs()}\n{proxy.log()}"
        assert stopped == 0, failure
        cluster.assert_no_traceback()
    assert result["ok"] is True, failure
    # nginx spreads the connections over both nodes: some (not all) were on the stopped one.
    assert 1 <= len(result["drained"]) < clients, failure
    assert result["before"] == [5] * clients, failure
    assert result["after"] == [10] * clients, failure
    for name, states in result["states"].items():
        assert states[-1] == "connected", (name, states)
    print(
        f"\nnginx + SIGTERM: {len(result['drained'])} of {clients} pusher-js clients got 4200, "
        f"reconnected through nginx in {result['reconnect_ms']} ms and resubscribed; "
        "every client got all 10 later events"
    )


def directives(config: str) -> list[str]:
    """The lines of an nginx config but for comments and blank lines."""
    lines = (line.strip() for line in config.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_the_tested_nginx_config_is_the_documented_one() -> None:
    """Only the upstream servers and the listen address differ from deploy/nginx/, and
    docs/cluster.md shows the file's directives, all of them."""
    original = CONFIG.read_text(encoding="utf-8")
    tested = site_config([7001, 7002], 8080)
    assert "    server 127.0.0.1:7001;\n    server 127.0.0.1:7002;\n" in tested
    assert "listen 127.0.0.1:8080;" in tested
    changed = [d for d in directives(original) if d not in directives(tested)]
    assert changed == [f"server 10.0.0.1{n}:6001;" for n in (1, 2, 3)] + ["listen 80;"]
    doc = DOC.read_text(encoding="utf-8")
    shown = re.search(r"```nginx\n(.*?)```", doc, re.DOTALL)
    assert shown is not None, "docs/cluster.md has no ```nginx block"
    assert directives(shown.group(1)) == directives(original)
