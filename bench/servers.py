"""The servers under test: a fresh process per measurement, pinned to CPU 0."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOADGEN = REPO / "bench" / "build" / "loadgen"  # built by bench.loadgen.build(); git-ignored
SOKETI_DIR = Path(os.environ.get("SOKETI_DIR", "/opt/soketi"))
SERVER_CPU = "0"
APP_ID, APP_KEY, APP_SECRET = "1", "bench-key", "bench-secret"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> None:
    """preexec: the soft open-files limit up to the hard one (20,000 here)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Server:
    """One running server process; `name` is "ressonance" or "soketi"."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError(f"{self.name} has no VmRSS (exited?)")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def cpu_times(self) -> dict[str, float]:
        """CPU seconds by figure name (a cluster also reports its parts)."""
        return {"server_cpu": self.cpu_seconds()}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _wait_listening(server: Server, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            tail = server.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{server.name} exited at start:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                time.sleep(0.3)  # let it finish starting before it is measured
                return
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not listen on {server.port} within {timeout:.0f} s")


def spawn(
    name: str,
    port: int,
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    logdir: Path,
    cpu: str = SERVER_CPU,
) -> Server:
    """Start `argv` pinned to `cpu` (CPU 0) in its own process group; return once it accepts on
    `port`."""
    log = logdir / f"{name}-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", cpu, *argv],
            cwd=cwd,
            env={k: v for k, v in os.environ.items() if not k.startswith("RESSONANCE_")} | env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_nofile,
            start_new_session=True,  # its own process group: killed as one, Ctrl-C or not
        )
    server = Server(name, port, proc, log)
    try:
        _wait_listening(server)
    except BaseException:  # Ctrl-C while it starts: it has its own session, so kill it here
        server.stop()
        raise
    return server


# The same app on both servers, with no limit that would get in the way of a benchmark.
RESSONANCE_APP = {
    "ID": APP_ID,
    "KEY": APP_KEY,
    "SECRET": APP_SECRET,
    "CLIENT_EVENTS": "true",
    "MAX_CLIENT_EVENTS_PER_SECOND": "0",  # 0 = unlimited
    "MAX_CONNECTIONS": "0",
    "MAX_PRESENCE_MEMBERS": "0",
}
SOKETI_APP = {
    "ID": APP_ID,
    "KEY": APP_KEY,
    "SECRET": APP_SECRET,
    "ENABLE_CLIENT_MESSAGES": "true",
    "MAX_CONNS": "-1",  # -1 = unlimited
    "MAX_BACKEND_EVENTS_PER_SEC": "-1",
    "MAX_CLIENT_EVENTS_PER_SEC": "-1",
    "MAX_READ_REQ_PER_SEC": "-1",
}


def start_ressonance(
    logdir: Path,
    src: Path | None = None,
    extra: tuple[str, ...] = (),
    name: str = "ressonance",
    webhooks: str | None = None,
) -> Server:
    """One node; `extra` CLI flags (a cluster node gets `--broker URL --node-id ID`);
    `webhooks`: the bench app's RESSONANCE_APP_WEBHOOKS (JSON; a revision before webhooks
    refuses it as an unknown setting)."""
    port = free_port()
    env = {f"RESSONANCE_APP_{k}": v for k, v in RESSONANCE_APP.items()}
    if webhooks is not None:
        env["RESSONANCE_APP_WEBHOOKS"] = webhooks
    env["RESSONANCE_LOG_LEVEL"] = "warning"
    env["RESSONANCE_ADMIN_PORT"] = "0"  # nodes run side by side (a revision without it: ignored)
    env["RESSONANCE_DATA_DIR"] = str(logdir / f"data-{port}")  # its own app store (ditto)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    argv = [sys.executable, "-m", "ressonance", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return spawn(name, port, [*argv, *extra], env, REPO, logdir)


def soketi_available() -> bool:
    return (SOKETI_DIR / "node_modules/@soketi/soketi/bin/server.js").exists() and bool(
        shutil.which("node")
    )


def start_soketi(logdir: Path) -> Server:
    """As docs/benchmarks-soketi.md describes: metrics and cluster discovery on loopback."""
    port = free_port()
    env = {f"SOKETI_DEFAULT_APP_{k}": v for k, v in SOKETI_APP.items()}
    env |= {
        "SOKETI_PORT": str(port),
        "SOKETI_HOST": "127.0.0.1",
        "SOKETI_METRICS_ENABLED": "false",
        "SOKETI_METRICS_HOST": "127.0.0.1",
        "SOKETI_METRICS_SERVER_PORT": str(free_port()),
        "SOKETI_CLUSTER_HOST": "127.0.0.1",
        "SOKETI_CLUSTER_UNICAST_ADDRESSES": "127.0.0.1",
        "SOKETI_CLUSTER_PORT": str(free_port()),
    }
    argv = ["node", "node_modules/@soketi/soketi/bin/server.js", "start"]
    return spawn("soketi", port, argv, env, SOKETI_DIR, logdir)


def start_sink(logdir: Path) -> Server:
    """`loadgen sink`: a trivial C server, to measure the load generator's own ceiling."""
    port = free_port()
    return spawn("sink", port, [str(LOADGEN), "sink", "--port", str(port)], {}, REPO, logdir)


# --webhooks: how long the bench's receiver takes to answer (-1: never, the 5 s time-out path)
RECEIVER_DELAYS = {"slow": 2.0, "hang": -1.0}
RECEIVER_CPU = "1" if (os.cpu_count() or 1) > 1 else "0"  # the load generator's (loadgen.py)
# the bench app's webhooks under --webhooks: every client event, and channels occupied/vacated
WEBHOOK_EVENTS = ("client_event", "channel_occupied", "channel_vacated")


def start_receiver(logdir: Path, mode: str) -> tuple[Server, str]:
    """The slow webhook receiver (bench/receiver.py) on the load generator's core, and the
    bench app's RESSONANCE_APP_WEBHOOKS pointing at it. Its counts land in `receiver.json` in
    `logdir` once it is stopped (SIGTERM: see `stop_receiver`)."""
    port = free_port()
    delay, stats = str(RECEIVER_DELAYS[mode]), str(logdir / "receiver.json")
    argv = [sys.executable, "-m", "bench.receiver", "--port", str(port), "--delay", delay,
            "--stats", stats]  # fmt: skip
    server = spawn("receiver", port, argv, {}, REPO, logdir, cpu=RECEIVER_CPU)
    url = f"http://127.0.0.1:{port}/hook"
    return server, json.dumps([{"url": url, "event_types": list(WEBHOOK_EVENTS)}])


def stop_receiver(receiver: Server, logdir: Path) -> dict[str, int]:
    """SIGTERM the receiver and return what it received (empty if it could not tell)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(receiver.pid, signal.SIGTERM)
    try:
        receiver.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        receiver.stop()
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads((logdir / "receiver.json").read_text()))
    return {}


def start(name: str, logdir: Path, src: Path | None = None, webhooks: str | None = None) -> Server:
    """Soketi, the sink, or ressonance (from `src`, with `webhooks` if given) under `name`
    ("current", "baseline", ...)."""
    if name == "soketi":
        return start_soketi(logdir)
    if name == "sink":
        return start_sink(logdir)
    return start_ressonance(logdir, src, name=name, webhooks=webhooks)
