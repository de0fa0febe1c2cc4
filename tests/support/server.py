"""Run the real ``ressonance serve`` in a subprocess on a free loopback port.

Tests get a :class:`RunningServer` with the address and the apps it serves; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_APPS: list[dict[str, Any]] = [
    {
        "id": "1001",
        "key": "test-key",
        "secret": "test-secret",
        "client_events": True,
        "subscription_count": True,
    },
    {
        "id": "1002",
        "key": "limited-key",
        "secret": "limited-secret",
        "client_events": False,
        "max_connections": 2,
        "max_presence_members": 2,
        "max_payload_kb": 1,
        "max_client_events_per_second": 3,
    },
    {"id": "1003", "key": "disabled-key", "secret": "disabled-secret", "enabled": False},
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (an app's webhooks, their filter, headers)
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config(path: Path, apps: list[dict[str, Any]], settings: dict[str, Any]) -> Path:
    lines = [f"{k} = {_toml_value(v)}" for k, v in settings.items()]
    for app in apps:
        lines.append("")
        lines.append("[[apps]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in app.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class RunningServer:
    host: str
    port: int
    apps: list[dict[str, Any]]
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)
    admin_port: int | None = None  # the admin listener, when the settings name one
    admin_token: str | None = None

    @property
    def app(self) -> dict[str, Any]:
        return self.apps[0]

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        assert self.admin_port, "started without admin_port in its settings"
        return f"http://{self.host}:{self.admin_port}"

    def ws_url(
        self, key: str | None = None, query: str = "protocol=7&client=js&version=8.4.0"
    ) -> str:
        return f"ws://{self.host}:{self.port}/app/{key or self.app['key']}?{query}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _wait_healthy(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{server.http_url}/health", timeout=1) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"server not healthy within {timeout}s:\n{server.log()}")


@contextlib.contextmanager
def run_server(
    tmp_dir: Path,
    apps: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    startup_timeout: float = 15.0,
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Start ``python -m ressonance serve`` on 127.0.0.1; stop it after (SIGTERM, then SIGKILL)."""
    apps = DEFAULT_APPS if apps is None else apps
    port = port or free_port()
    cmd = [sys.executable, "-m", "ressonance", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if apps:
        config = write_config(tmp_dir / f"ressonance-{port}.toml", apps, settings or {})
        cmd += ["--config", str(config)]
    if "admin_port" not in (settings or {}):  # off unless asked: servers run side by side
        cmd += ["--admin-port", "0"]
    cmd += args or []
    log_path = tmp_dir / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RESSONANCE_")}
    if not {"data_dir", "app_store"} & set(settings or {}):  # its own store, not the cwd's
        full_env["RESSONANCE_DATA_DIR"] = str(tmp_dir / f"data-{port}")
    full_env.update(env or {})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    server = RunningServer("127.0.0.1", port, apps, proc, log_path)
    server.admin_port = (settings or {}).get("admin_port")
    server.admin_token = (settings or {}).get("admin_token")
    try:
        _wait_healthy(server, startup_timeout)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
