"""Debian's nginx in front of test nodes, with the documented deploy/nginx/ressonance.conf.

Only the upstream's ``server`` lines and the ``listen`` line are replaced (nodes on 127.0.0.1, a
free loopback port); every proxy directive stays as written, so the tests check the config users
copy. nginx runs in the foreground with its prefix, pid file, temp paths and logs in the test's
directory, and is stopped after (SIGQUIT, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.server import RunningServer, free_port
from tests.support.services import require

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "ressonance.conf"
UPSTREAM = re.compile(r"(upstream ressonance \{\n)((?:\s*server .*;\n)+)")
LISTEN = re.compile(r"^(\s*)listen 80;$", re.MULTILINE)

MAIN = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

{site}
}}
"""


def site_config(upstreams: list[int], port: int, template: str | None = None) -> str:
    """deploy/nginx/ressonance.conf with these node ports and this listen port on 127.0.0.1."""
    text = CONFIG.read_text(encoding="utf-8") if template is None else template
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in upstreams)
    text, found = UPSTREAM.subn(lambda m: m.group(1) + servers, text)
    if found != 1:
        raise ValueError(f"{CONFIG}: no `upstream ressonance {{ server ...; }}` block to fill in")
    text, found = LISTEN.subn(rf"\1listen 127.0.0.1:{port};", text)
    if found != 1:
        raise ValueError(f"{CONFIG}: no `listen 80;` line to replace")
    return text


@dataclass
class Nginx:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    tmp: Path

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def front(self, apps: list[dict[str, Any]]) -> RunningServer:
        """nginx as the address clients and SDKs use (tests/e2e/node_runner.py takes one)."""
        return RunningServer(self.host, self.port, apps, self.process, self.tmp / "error.log")

    def log(self) -> str:
        parts = []
        for name in ("nginx.out", "error.log"):
            path = self.tmp / name
            if path.exists():
                parts.append(f"--- nginx {name} ---\n" + path.read_text(errors="replace"))
        return "\n".join(parts)


def _wait_accepting(proxy: Nginx, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise RuntimeError(f"nginx exited with {proxy.process.returncode}:\n{proxy.log()}")
        with contextlib.suppress(OSError), socket.create_connection((proxy.host, proxy.port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nginx not accepting on {proxy.port} within {timeout}s:\n{proxy.log()}")


@contextlib.contextmanager
def run_nginx(
    tmp_dir: Path, upstreams: list[int], startup_timeout: float = 10.0
) -> Iterator[Nginx]:
    """nginx on a free 127.0.0.1 port proxying to the nodes on ``upstreams`` (their ports)."""
    binary = require("/usr/sbin/nginx")
    tmp = tmp_dir / "nginx"
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # As root, nginx would switch its workers to `nobody`, who cannot use the test's directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        MAIN.format(user=user, tmp=tmp, site=site_config(upstreams, port)), encoding="utf-8"
    )
    cmd = [binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]
    with (tmp / "nginx.out").open("wb") as out:
        checked = subprocess.run(
            [*cmd, "-t"], stdout=out, stderr=subprocess.STDOUT, timeout=10, check=False
        )
    if checked.returncode != 0:
        text = (tmp / "nginx.out").read_text(errors="replace")
        raise RuntimeError(f"nginx -t refused the generated config {conf}:\n{text}")
    with (tmp / "nginx.out").open("ab") as out:
        proc = subprocess.Popen([*cmd, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
    proxy = Nginx("127.0.0.1", port, proc, tmp)
    try:
        _wait_accepting(proxy, startup_timeout)
        yield proxy
    finally:
        if proc.poll() is None:
            # SIGTERM is nginx's fast shutdown: a graceful one (SIGQUIT) waits for WebSockets.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
