"""The ``ressonance`` command as a user runs it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import urllib.request
from pathlib import Path

from ressonance.config import Settings
from ressonance.models import App
from tests.support.server import run_server


def ressonance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ressonance", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_help_documents_every_option() -> None:
    out = ressonance("serve", "--help").stdout
    for option in ("--host", "--port", "--config", "--activity-timeout", "--pong-timeout"):
        assert option in out
    # every setting's variable, so a new setting cannot be left out of --help
    server = {f.name for f in dataclasses.fields(Settings)} - {
        "apps",
        "dev_app",
        "admin_token_generated",  # not a setting: whether admin_token was generated
    }
    for name in server:
        assert f"RESSONANCE_{name.upper()}" in out, name
    for field in dataclasses.fields(App):
        if field.name != "previous":  # the app store's older key pairs, not a setting
            assert f"RESSONANCE_APP_{field.name.upper()}" in out, field.name
    assert "serve" in ressonance("--help").stdout


def test_workers_need_a_shared_broker() -> None:
    result = ressonance("serve", "--workers", "2", "--port", "1")
    assert result.returncode == 2
    assert "configure" not in result.stdout and "RESSONANCE_BROKER" in result.stderr
    for option in ("--broker", "--node-id", "--region", "--workers"):
        assert option in ressonance("serve", "--help").stdout


def test_config_error_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    result = ressonance("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "unknown setting" in result.stderr and "Traceback" not in result.stderr


def test_dev_app_is_printed_with_laravel_env(tmp_path: Path) -> None:
    with run_server(tmp_path, apps=[]) as server:
        with urllib.request.urlopen(f"{server.http_url}/health", timeout=5) as resp:
            assert resp.status == 200
        log = server.log()
    assert "DEVELOPMENT app" in log
    assert "PUSHER_APP_KEY=ressonance-dev-key" in log
    assert "BROADCAST_CONNECTION=pusher" in log


def test_one_app_from_the_environment(tmp_path: Path) -> None:
    env = {"RESSONANCE_APP_ID": "77", "RESSONANCE_APP_KEY": "envkey", "RESSONANCE_APP_SECRET": "s"}
    with run_server(tmp_path, apps=[], env=env) as server:
        log = server.log()
    assert "DEVELOPMENT" not in log
