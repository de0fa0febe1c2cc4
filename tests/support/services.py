"""Private redis-server, nats-server and PostgreSQL processes for tests, on free loopback ports.

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
import tempfile
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


POSTGRES_USER = "ressonance"  # the superuser initdb creates, trusted on 127.0.0.1
POSTGRES_DATABASE = "ressonance"


def _postgres_binary(name: str) -> str:
    """``name`` (initdb, postgres, createdb) on PATH, in the system directories or in Debian's
    versioned /usr/lib/postgresql/N/bin (the newest); missing, as :func:`require`."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(KNOWN_PATHS))
    if found:
        return found
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    for directory in sorted(versions, key=lambda bin_: bin_.parent.name.zfill(4), reverse=True):
        if (directory / name).is_file():
            return str(directory / name)
    return require(name)


def _unprivileged() -> list[str]:
    """As root, the prefix that runs a command as ``nobody``: postgres refuses to run as root
    (https://www.postgresql.org/docs/current/postgres-user.html). ``setpriv`` execs in place, so
    the process started is postgres itself and signals reach it directly."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


class PostgresService(Service):
    """A private PostgreSQL; :meth:`stop` is a fast shutdown (SIGINT: clients are disconnected,
    https://www.postgresql.org/docs/current/server-shutdown.html), so a later :meth:`start` on
    the same data directory and port comes back with the data. :meth:`start` returns once it
    accepts sessions (it accepts TCP a little earlier, answering "starting up")."""

    def start(self, timeout: float = 10.0) -> None:
        super().start(timeout)
        ready = [_postgres_binary("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        deadline = time.monotonic() + timeout
        while subprocess.run([*ready, "-t", "1"], timeout=5, check=False).returncode != 0:
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.url} not ready within {timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def postgres_server(tmp_path: Path) -> Iterator[PostgresService]:
    """A private PostgreSQL on a free loopback port, TCP only (no unix socket), trust auth for
    the superuser ``ressonance`` and a database ``ressonance``; ``url`` is its DSN.

    The data directory is a fresh private directory under the system temp dir rather than
    ``tmp_path``, which, as root, sits in pytest's 0700 ``pytest-of-root`` where ``nobody``
    cannot reach it; it is removed after. The server log is ``tmp_path/postgres.log``.
    """
    initdb = _postgres_binary("initdb")
    postgres = _postgres_binary("postgres")
    createdb = _postgres_binary("createdb")
    data = Path(tempfile.mkdtemp(prefix="ressonance-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "nobody", "nogroup")
        pgdata = data / "data"
        init = subprocess.run(
            [
                *_unprivileged(),
                initdb,
                "-D",
                str(pgdata),
                "-U",
                POSTGRES_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=60,
            cwd=data,
            check=False,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout.decode(errors='replace')}")
        service = PostgresService(
            lambda port: [
                *_unprivileged(),
                postgres,
                "-D",
                str(pgdata),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            f"postgresql://{POSTGRES_USER}@127.0.0.1:{{port}}/{POSTGRES_DATABASE}",
            tmp_path / "postgres.log",
        )
        with _running(service):
            created = subprocess.run(
                [
                    createdb,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(service.port),
                    "-U",
                    POSTGRES_USER,
                    POSTGRES_DATABASE,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=30,
                check=False,
            )
            if created.returncode != 0:
                raise RuntimeError(f"createdb failed:\n{created.stdout.decode(errors='replace')}")
            yield service
    finally:
        shutil.rmtree(data, ignore_errors=True)
