"""Instructions per operation on the hot paths, current tree against a git revision: an A/B
that the machine's load cannot move (docs/performance.md).

    .venv/bin/python -m bench.instructions --baseline REV [--out FILE.json]

Each path runs in process, without sockets, under ``valgrind --tool=callgrind`` twice (N1 and
N2 operations); the difference divided by N2 - N1 is the cost of one operation, start-up and
imports cancelled out:

- ``http-publish``: a signed ``POST /apps/1/events`` through ``RequestReader.feed``, the API
  handler (auth check, JSON, routing, publish to one subscriber) and ``serialize``;
- ``client-event``: one ``client-`` event received by the node and fanned out to 9 others;
- ``fanout-1k``: one HTTP-API publish delivered to 1,000 subscribers.

Sockets are fakes whose ``send`` appends to a list, as ``Edge.send`` does. Wall-clock figures
stay in ``make bench``; this is for differences of a few percent, which its noise hides.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import extract, resolve

PATHS = ("http-publish", "client-event", "fanout-1k")
COUNTS = {"http-publish": (200, 1200), "client-event": (500, 3000), "fanout-1k": (20, 120)}

# Runs under either revision's src/: only APIs both have (Request moved to exchange.py).
DRIVER = r"""
import asyncio, hashlib, hmac, json, sys
from urllib.parse import urlencode
try:
    from ressonance.exchange import Request
except ImportError:
    from ressonance.transport.http11 import Request
from ressonance.apps.static import StaticAppStore
from ressonance.http.api import Api
from ressonance.models import App
from ressonance.node.node import Node
from ressonance.protocol import signatures
from ressonance.scaling.memory import MemoryBroker
from ressonance.transport.http11 import RequestReader, serialize

path, n = sys.argv[1], int(sys.argv[2])
APP = App(id="1", key="key", secret="secret", max_client_events_per_second=0,
          max_subscriptions_per_second=0, max_channels_per_connection=0)

class Sock:
    __slots__ = ("session", "out")
    def __init__(self): self.out = []
    def send(self, frame): self.out.append(frame)
    def close(self, code, reason): pass

async def main():
    node = Node(MemoryBroker())
    await node.start()
    def subscribe(channel, count):
        socks = []
        for _ in range(count):
            s = Sock(); node.connect(s, APP); socks.append(s)
            data = {"channel": channel}
            if channel.startswith("private-"):
                sid = s.session.socket_id
                data["auth"] = signatures.channel_auth("key", "secret", sid, channel)
            node.receive(s, json.dumps({"event": "pusher:subscribe", "data": data}))
        return socks
    if path == "http-publish":
        socks = subscribe("news", 1)
        api = Api(node, StaticAppStore([APP]), clock=lambda: 1_700_000_000.0)
        body = json.dumps({"name": "update", "channel": "news", "data": "{\"n\":1}"}).encode()
        q = {"auth_key": "key", "auth_timestamp": "1700000000", "auth_version": "1.0",
             "body_md5": hashlib.md5(body).hexdigest()}
        pairs = "&".join(f"{k}={v}" for k, v in sorted(q.items()))
        q["auth_signature"] = hmac.new(b"secret", f"POST\n/apps/1/events\n{pairs}".encode(),
                                       hashlib.sha256).hexdigest()
        head = (f"POST /apps/1/events?{urlencode(q)} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        raw = head.encode() + body
        reader = RequestReader(1 << 20)
        for _ in range(n):
            (request,), _rest = reader.feed(raw)
            response = await api.handle(request)
            assert response.status == 200, response.body
            serialize(response, True)
            socks[0].out.clear()
    elif path == "client-event":
        socks = subscribe("private-chat", 10)
        frame = json.dumps({"event": "client-typing", "channel": "private-chat", "data": {"x": 1}})
        sender = socks[0]
        for i in range(n):
            node.receive(sender, frame)
            if i % 50 == 0:
                for s in socks: s.out.clear()
        assert len(socks[1].out) > 0
    elif path == "fanout-1k":
        socks = subscribe("news", 1000)
        for s in socks: s.out.clear()
        node.publish(APP, "news", "update", "{\"n\":0}")  # once more in N1 and N2: cancels out
        assert all(len(s.out) == 1 for s in socks)
        for s in socks: s.out.clear()
        for _ in range(n):
            node.publish(APP, "news", "update", "{\"n\":1}")
            for s in socks: s.out.clear()

asyncio.run(main())
"""


def count(python: str, src: Path, path: str, n: int, workdir: Path) -> int:
    """Instructions of one process running ``n`` operations of ``path`` (callgrind's total)."""
    out = workdir / f"callgrind.{path}.{n}.{os.getpid()}"
    env = os.environ | {"PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", DRIVER,
         path, str(n)],
        env=env, check=True, capture_output=True, timeout=1800,
    )  # fmt: skip
    text = out.read_text()
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if found is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(found.group(1))


def per_op(python: str, src: Path, path: str, workdir: Path) -> float:
    n1, n2 = COUNTS[path]
    return (count(python, src, path, n2, workdir) - count(python, src, path, n1, workdir)) / (
        n2 - n1
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    p.add_argument("--baseline", required=True, help="git revision to compare the tree with")
    p.add_argument("--only", help="comma-separated paths: " + ",".join(PATHS))
    p.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    paths = args.only.split(",") if args.only else list(PATHS)
    commit = resolve(args.baseline)
    current = Path(__file__).resolve().parents[1] / "src"
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ressonance-instr-") as tmp:
        baseline = extract(commit, Path(tmp) / "baseline")
        for path in paths:
            now = per_op(sys.executable, current, path, Path(tmp))
            before = per_op(sys.executable, baseline, path, Path(tmp))
            results[path] = {"current": now, "baseline": before, "ratio": now / before}
    print(f"instructions per operation, current tree vs {args.baseline} ({commit[:12]})")
    print(f"{'path':<14} {'current':>12} {'baseline':>12} {'ratio':>7}")
    for path, r in results.items():
        print(f"{path:<14} {r['current']:>12,.0f} {r['baseline']:>12,.0f} {r['ratio']:>7.3f}")
    document = {"baseline": args.baseline, "commit": commit, "paths": results}
    print(json.dumps(document))
    if args.out:
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
