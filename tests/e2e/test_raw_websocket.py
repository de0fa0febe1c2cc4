"""Raw WebSocket clients (the ``ws`` package) for what pusher-js never sends: another protocol
version or none, plus the wire details it hides (double-encoded data, ping/pong)."""

from __future__ import annotations

import pytest

from tests.e2e.node_runner import run_scenario
from tests.support.server import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SCRIPT = "raw_ws.mjs"


def test_unsupported_protocol_version_is_4007(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "unsupported_protocol")
    assert result["error"]["code"] == 4007
    assert result["close"]["code"] == 4007


def test_missing_protocol_is_accepted(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "missing_protocol")
    assert result["established"]["activity_timeout"] > 0


def test_handshake_double_encoding_and_ping(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "handshake_and_ping")
    assert result["ws_pong"] is True


def test_refusals_send_error_then_close_with_the_same_code(server: RunningServer) -> None:
    result = run_scenario(server, SCRIPT, "refusals")
    assert result["unknown_key"]["close"] == result["unknown_key"]["error"]["code"] == 4001
    assert result["disabled"]["close"] == result["disabled"]["error"]["code"] == 4003
    assert result["over_quota"]["close"] == result["over_quota"]["error"]["code"] == 4004
