"""pusher-js 8 (the package users install) against Ressonance, with the pusher Node SDK publishing
and signing auth in pusher-js ``customHandler``s. Each test runs one scenario of js/pusher_js.mjs;
the script asserts on every frame and event, this file re-checks the result it reports.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.node_runner import LiveScenario, run_scenario
from tests.support.server import DEFAULT_APPS, RunningServer, run_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SCRIPT = "pusher_js.mjs"


def test_connect_and_public_channel(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "connect_public")
    assert re.fullmatch(r"\d+\.\d+", result["socket_id"])
    assert result["activity_timeout"] > 0
    assert result["data"] == {"id": 42, "items": ["a", "b"], "note": "héllo ✓"}


def test_private_channel(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "private_channel")
    assert result["data"] == {"state": "paid"}


def test_presence_members_are_users_not_connections(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "presence")
    assert result["counts"] == {"alice1": 1, "bob1": 2, "alice2": 2}
    assert result["user_count"] == 2
    assert result["subscription_count"] == 3
    assert result["member_added"] == "bob"
    assert result["member_removed"] == "alice"


def test_private_encrypted_channel(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "encrypted")
    assert result["data"] == {"launch": "codes", "n": 7}
    assert result["wire_keys"] == ["ciphertext", "nonce"]


def test_cache_channels(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "cache")
    for prefix in ("cache-", "private-cache-"):
        assert result[prefix] == {"miss": "pusher:cache_miss", "cached": {"eur": 1.08}}


def test_client_events_on_private_channel(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "client_events_private")
    assert result["data"] == {"name": "Ada", "n": 1}
    assert not (result["metadata"] or {}).get("user_id")


def test_client_events_on_presence_channel_carry_user_id(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "client_events_presence")
    assert result["data"] == {"typing": True}
    assert result["user_id"] == "alice"


def test_client_events_rejected_when_disabled(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "client_events_disabled")
    assert result["code"] == 4301
    assert result["state"] == "connected"


def test_subscription_count(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "subscription_count")
    assert result["counts"][0] == 1
    assert 2 in result["counts"]
    assert result["counts"][-1] == 1


def test_signin_send_to_user_and_terminate(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "signin")
    assert result["greet"] == {"hi": "Ada"}
    assert result["state_after"] != "connected"
    # docs/pusher-js.md: terminated connections are closed with 4009 (pusher-js does not retry).
    assert result["close_code"] == 4009


def test_bad_auth_reaches_the_channel_as_subscription_error(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "bad_auth")
    for key in ("private-tampered", "presence-tampered"):
        assert result[key]["type"] == "AuthError"
        assert result[key]["status"] == 401
    assert result["invalid"]["type"] == "InvalidChannel"
    assert result["invalid"]["status"] == 4009


def test_unknown_app_key_is_refused_with_4001(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "unknown_key")
    assert result["code"] == 4001
    assert "connected" not in result["states"]


def test_disabled_app_is_refused_with_4003(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "disabled_app")
    assert result["code"] == 4003
    assert "connected" not in result["states"]


def test_connection_quota_is_refused_with_4004(tmp_path: Path) -> None:
    # A server of its own: no connection of another test may hold one of app 1002's two slots.
    with run_server(tmp_path) as own:
        result = run_scenario(own, SCRIPT, "over_quota")
    assert result["code"] == 4004
    assert "connected" not in result["states"]


def test_full_presence_channel_is_refused_with_limit_reached(tmp_path: Path) -> None:
    apps = [
        *DEFAULT_APPS,
        {
            "id": "1004",
            "key": "small-rooms-key",
            "secret": "small-rooms-secret",
            "max_presence_members": 2,
        },
    ]
    with run_server(tmp_path, apps=apps) as own:
        result = run_scenario(own, SCRIPT, "presence_full", E2E_APP="1004")
    assert result["error"]["type"] == "LimitReached"
    assert result["error"]["status"] == 4100
    assert result["count_seen_by_second_connection"] == 2


def test_client_event_rate_limit(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "client_events_rate_limit")
    assert result["received"] <= 10
    assert result["received"] + result["rejected"] == result["sent"]


def test_signin_watchlist_online_offline(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "watchlist")
    assert result["online"] == result["offline"]
    assert len(result["online"]) == 1


def test_restart_closes_with_4200_and_pusher_js_comes_back(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with run_server(tmp_path / "first") as first:
        live = LiveScenario(first, SCRIPT, "restart_reconnect")
        try:
            live.wait_for("ready")
            port = first.port
        except BaseException:
            live.kill()
            raise
    # The same port again, as a restarted deployment would have it.
    try:
        with run_server(tmp_path / "second", port=port) as second:
            result = live.result(second)
    finally:
        live.kill()
    assert result["close_code"] == 4200
    # 4200 means "reconnect at once": pusher-js goes straight back to connecting (it then waits its
    # own 15 s strategy timeout if the immediate retry found no server, hence the long test).
    assert result["states"][:2] == ["connected", "connecting"], result["timeline"]
    assert result["states"][-1] == "connected"
    assert result["first_socket_id"] != result["second_socket_id"]
