"""Laravel Echo 2 with the ``pusher`` and the ``reverb`` broadcaster (pusher-js underneath),
configured as docs/laravel.md says, against Ressonance. A Laravel-like auth backend
(``POST /broadcasting/auth``) runs inside the Node script on 127.0.0.1; the pusher Node SDK
stands in for Laravel's broadcaster (event names like ``App\\Events\\OrderShipped``).
"""

from __future__ import annotations

import pytest

from tests.e2e.node_runner import run_scenario
from tests.support.server import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SCRIPT = "echo.mjs"
BROADCASTERS = ["pusher", "reverb"]


@pytest.mark.parametrize("broadcaster", BROADCASTERS)
def test_channel_listen(server: RunningServer, broadcaster: str) -> None:
    result = run_scenario(server, SCRIPT, "listen", broadcaster)
    assert result["broadcaster"] == broadcaster


@pytest.mark.parametrize("broadcaster", BROADCASTERS)
def test_private_listen(server: RunningServer, broadcaster: str) -> None:
    result = run_scenario(server, SCRIPT, "private", broadcaster)
    assert result["channel"].startswith("private-App.Models.User.")


@pytest.mark.parametrize("broadcaster", BROADCASTERS)
def test_whisper_and_listen_for_whisper(server: RunningServer, broadcaster: str) -> None:
    run_scenario(server, SCRIPT, "whisper", broadcaster)


@pytest.mark.parametrize("broadcaster", BROADCASTERS)
def test_join_here_joining_leaving(server: RunningServer, broadcaster: str) -> None:
    result = run_scenario(server, SCRIPT, "presence", broadcaster)
    assert result["here_first"] == [{"id": 1, "name": "Taylor"}]
    assert result["here_second"] == [{"id": 1, "name": "Taylor"}, {"id": 2, "name": "Abigail"}]


@pytest.mark.parametrize("broadcaster", BROADCASTERS)
def test_encrypted_private(server: RunningServer, broadcaster: str) -> None:
    run_scenario(server, SCRIPT, "encrypted", broadcaster)


@pytest.mark.parametrize("broadcaster", BROADCASTERS)
def test_error_callback_on_failed_auth(server: RunningServer, broadcaster: str) -> None:
    result = run_scenario(server, SCRIPT, "error", broadcaster)
    assert result["forbidden"]["status"] == 403
    assert result["tampered"] == {"type": "AuthError", "status": 401, "error": "Invalid signature"}
