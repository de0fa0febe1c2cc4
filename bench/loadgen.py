"""The C load generator (bench/loadgen.c): built with gcc, run pinned to CPU 1."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import selectors
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.servers import APP_ID, APP_KEY, APP_SECRET, LOADGEN, raise_nofile

SOURCE = Path(__file__).resolve().parent / "loadgen.c"
BINARY = LOADGEN
CLIENT_CPU = "1" if (os.cpu_count() or 1) > 1 else "0"  # the server has CPU 0


def build() -> Path:
    """Compile loadgen.c when the binary is missing or older than the source."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    BINARY.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(BINARY), str(SOURCE)],
        check=True,
    )
    return BINARY


class Timeout(Exception):
    """The load generator did not answer before the scenario's deadline."""


class Session:
    """One load generator process, pinned to CPU 1, that answers with JSON lines.

    `loadgen ws` opens and subscribes its sockets, prints "ready", then runs one phase per
    command; `loadgen http` runs its one phase and exits. Each phase prints "mark" when the
    measurement starts and "end" when it stops, so the server's CPU can be read at both.
    """

    def __init__(self, mode: str, port: int, deadline: float, **opts: str | int) -> None:
        argv = [str(BINARY), mode, "--port", str(port)]
        if mode == "ws":
            argv += ["--key", APP_KEY, "--secret", APP_SECRET]
        for name, value in opts.items():
            argv += ["--" + name.replace("_", "-"), str(value)]
        self.deadline = deadline
        self.proc = subprocess.Popen(
            ["taskset", "-c", CLIENT_CPU, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=raise_nofile,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._buf = b""

    def read(self, event: str) -> dict[str, Any]:
        """The next JSON line whose "event" is `event` (lines before it are skipped)."""
        assert self.proc.stdout is not None
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                message: dict[str, Any] = json.loads(line)
                if message.get("event") == event:
                    return message
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"no {event!r} from the load generator in time")
            if self._sel.select(timeout=left):
                chunk = self.proc.stdout.read(65536)
                if not chunk:
                    raise RuntimeError(f"load generator exited (waiting for {event!r})")
                self._buf += chunk

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._sel.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def signed_target(method: str, path: str, body: bytes = b"", **params: str) -> str:
    """`path?query` for a Pusher HTTP API call, signed with the bench app's secret."""
    params |= {"auth_key": APP_KEY, "auth_timestamp": str(int(time.time())), "auth_version": "1.0"}
    if body:
        params["body_md5"] = hashlib.md5(body).hexdigest()
    query = "&".join(f"{k}={params[k]}" for k in sorted(params))
    signature = hmac.new(
        APP_SECRET.encode(), f"{method}\n{path}\n{query}".encode(), hashlib.sha256
    ).hexdigest()
    return f"{path}?{query}&auth_signature={signature}"


def signed_publish(port: int, channel: str, data: str) -> bytes:
    """A complete signed `POST /apps/{id}/events` request (keep-alive)."""
    body = json.dumps({"name": "bench", "channel": channel, "data": data}).encode()
    head = (
        f"POST {signed_target('POST', f'/apps/{APP_ID}/events', body)} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def subscription_count(port: int, channel: str, timeout: float) -> int:
    """The cluster-wide subscription count of `channel` as the server on `port` reports it
    (signed `GET /apps/{id}/channels/{name}?info=subscription_count`)."""
    target = signed_target("GET", f"/apps/{APP_ID}/channels/{channel}", info="subscription_count")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"GET {channel} on port {port}: {response.status} {body[:200]!r}")
    return int(json.loads(body).get("subscription_count", 0))
