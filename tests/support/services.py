"""Private redis-server and nats-server processes for tests, on free loopback ports.

Never the shared system services (6379, 4222): each test module starts its own, and can stop,
kill and restart it on the same port to test what a broker does when its server goes away.
Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.server import free_port

KNOWN_PATHS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")


def require(binary: str) -> str:
    """The absolute path of ``binary``; missing, the test fails on CI and is skipped elsewhere
    (``scripts/install-test-deps.sh`` installs it)."""
    found = shutil.which(binary) or shutil.which(binary, path=os.pathsep.join(KNOWN_PATHS))
    if found:
        return found
    reason = f"{binary} is not installed (run scripts/install-test-deps.sh as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Service:
    """A private server process on a fixed loopback port; :meth:`start` again after
    :meth:`stop` or :meth:`kill` brings it back on the same port."""

    def __init__(
        self, command: Callable[[int], list[str]], scheme_url: str, log_path: Path
    ) -> None:
        self.port = free_port()
        self.url = scheme_url.format(port=self.port)
        self._command = command
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(self.port), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not _accepts(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.url} exited at start:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.url} not accepting within {timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.kill()
        self._process.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections open and answers nothing (a hung server)."""
        assert self._process is not None and self._process.poll() is None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        return self._log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def _running(service: Service) -> Iterator[Service]:
    service.start()
    try:
        yield service
    finally:
        service.stop()


@contextmanager
def redis_server(tmp_path: Path) -> Iterator[Service]:
    binary = require("redis-server")
    service = Service(
        lambda port: [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        "redis://127.0.0.1:{port}/0",
        tmp_path / "redis.log",
    )
    with _running(service):
        yield service


@contextmanager
def nats_server(tmp_path: Path, max_payload: int | None = None) -> Iterator[Service]:
    """A private nats-server; ``max_payload`` (bytes) lowers its message size limit."""
    binary = require("nats-server")
    extra: list[str] = []
    if max_payload is not None:
        config = tmp_path / "nats.conf"
        config.write_text(f"max_payload: {max_payload}\n")
        extra = ["-c", str(config)]
    service = Service(
        lambda port: [binary, "-a", "127.0.0.1", "-p", str(port), *extra],
        "nats://127.0.0.1:{port}",
        tmp_path / "nats.log",
    )
    with _running(service):
        yield service
