"""The pusher Node SDK 5 (pusher-http-node) against every HTTP endpoint of Ressonance, with
pusher-js clients checking deliveries; rejections the SDK will not produce are sent raw, signed
with the SDK's own Token.
"""

from __future__ import annotations

import pytest

from tests.e2e.node_runner import run_scenario
from tests.support.server import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SCRIPT = "sdk.mjs"


def test_trigger_channels_exclusion_and_info(server: RunningServer) -> None:
    info = run_scenario(server, SCRIPT, "trigger")["info"]["channels"]
    public = next(v for k, v in info.items() if not k.startswith("presence-"))
    presence = next(v for k, v in info.items() if k.startswith("presence-"))
    assert public == {"subscription_count": 2}
    assert presence == {"subscription_count": 1, "user_count": 1}


def test_trigger_batch(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "trigger_batch")
    assert result["with_info"] == {"batch": [{}, {"subscription_count": 1}]}


def test_channel_queries(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "queries")
    assert result["cache"]["event"] == "price"
    assert sorted(u["id"] for u in result["users"]) == ["alice", "bob"]


def test_user_endpoints_without_connections(server: RunningServer) -> None:
    run_scenario(server, SCRIPT, "users_api")


def test_rejections(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "rejections")
    del result["ok"], result["scenario"]
    assert result == {
        "wrong_secret": 401,
        "too_large": 413,
        "unknown_app": result["unknown_app"],
        "disabled_app": 403,
        "too_many_channels": 400,
        "too_many_batch": 400,
        "stale_timestamp": 401,
        "body_md5_mismatch": 401,
    }
    assert result["unknown_app"] in (401, 404)


def test_data_up_to_the_limit_arrives_intact(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "large_payload")
    assert result == {"ok": True, "scenario": "large_payload", "bytes": 10240, "over": 413}


def test_keep_alive_agent(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "keep_alive")
    assert result["sockets"] <= 2
