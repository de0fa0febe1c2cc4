"""Run one Node scenario script (tests/e2e/js/*.mjs) against a running Ressonance.

The scripts use the real npm packages (pusher-js, laravel-echo, pusher) installed by
tests/e2e/install.sh. A missing node or node_modules is a test failure, never a skip: these tests
are the proof that the clients users have work unchanged.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import RunningServer

E2E_DIR = Path(__file__).resolve().parent
JS_DIR = E2E_DIR / "js"
NODE_MODULES = E2E_DIR / "node_modules"
REQUIRED_PACKAGES = ("pusher-js", "laravel-echo", "pusher", "ws")
SUBPROCESS_TIMEOUT = 45.0


def node_binary() -> str:
    """The node executable; fails the test (in CI and locally) when the toolchain is missing."""
    node = shutil.which("node")
    where = "CI" if os.environ.get("CI") == "true" else "this machine"
    if node is None:
        pytest.fail(
            f"node is not installed on {where}: run `bash scripts/install-test-deps.sh` "
            "(or `make install-test`)",
            pytrace=False,
        )
    missing = [p for p in REQUIRED_PACKAGES if not (NODE_MODULES / p / "package.json").is_file()]
    if missing:
        pytest.fail(
            f"tests/e2e/node_modules lacks {', '.join(missing)} on {where}: "
            "run `bash tests/e2e/install.sh` (or `make install-test`)",
            pytrace=False,
        )
    return node


def server_env(server: RunningServer, **extra: str) -> dict[str, str]:
    apps = [
        {"id": str(a["id"]), "key": a["key"], "secret": a["secret"]}
        for a in server.apps
        if "key" in a and "secret" in a
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_")}
    env["E2E_SERVER"] = json.dumps({"host": server.host, "port": server.port, "apps": apps})
    env.update(extra)
    return env


def run_scenario(
    server: RunningServer,
    script: str,
    scenario: str,
    *args: str,
    timeout: float = SUBPROCESS_TIMEOUT,
    **env: str,
) -> dict[str, Any]:
    """Run ``node js/<script> <scenario> [args]``; its JSON result, or fail with its report."""
    node = node_binary()
    cmd = [node, str(JS_DIR / script), scenario, *args]
    try:
        proc = subprocess.run(
            cmd,
            cwd=E2E_DIR,
            env=server_env(server, **env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{script} {scenario} did not finish within {timeout}s\n"
            f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}\n{_server_log_tail(server)}",
            pytrace=False,
        )
    if proc.returncode != 0:
        pytest.fail(
            f"{script} {scenario} exited with {proc.returncode}\n"
            f"stderr:\n{proc.stderr[-12000:]}\nstdout:\n{proc.stdout[-4000:]}\n"
            f"{_server_log_tail(server)}",
            pytrace=False,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        pytest.fail(f"{script} {scenario} printed no JSON result:\n{proc.stdout}", pytrace=False)
    result: dict[str, Any] = json.loads(lines[-1])
    assert result.get("ok") is True, result
    assert result.get("scenario") == scenario, result
    return result


class LiveScenario:
    """A scenario script running in the background, for tests that act on the server midway
    (restart it, for instance). Read its stdout lines with :meth:`wait_for`; then :meth:`result`.
    """

    def __init__(self, server: RunningServer, script: str, scenario: str, *args: str) -> None:
        node = node_binary()
        self.server = server
        self.name = f"{script} {scenario}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [node, str(JS_DIR / script), scenario, *args],
            cwd=E2E_DIR,
            env=server_env(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_for(self, key: str, timeout: float = 20.0) -> dict[str, Any]:
        """The first JSON line on stdout that has ``key``; fails if it does not come in time."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    break
                self.lines.append(line)
                if line.startswith("{") and key in (obj := json.loads(line)):
                    return obj  # type: ignore[no-any-return]
        self.kill()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        pytest.fail(
            f"{self.name}: no line with '{key}' within {timeout}s\nstdout:\n{''.join(self.lines)}"
            f"\nstderr:\n{stderr[-12000:]}",
            pytrace=False,
        )

    def result(self, server: RunningServer, timeout: float = SUBPROCESS_TIMEOUT) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not finish within {timeout}s", pytrace=False)
        stdout = "".join(self.lines) + out
        if self.proc.returncode != 0:
            pytest.fail(
                f"{self.name} exited with {self.proc.returncode}\nstderr:\n{err[-12000:]}\n"
                f"stdout:\n{stdout[-4000:]}\n{_server_log_tail(server)}",
                pytrace=False,
            )
        lines = [line for line in stdout.splitlines() if line.startswith('{"ok"')]
        if not lines:
            pytest.fail(f"{self.name} printed no JSON result:\n{stdout}", pytrace=False)
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def _server_log_tail(server: RunningServer, lines: int = 40) -> str:
    try:
        log = server.log().splitlines()
    except OSError:
        return "(no server log)"
    return "server log (tail):\n" + "\n".join(log[-lines:])
