"""Instructions per operation on the hot paths, current tree against a git revision: an A/B
that the machine's load cannot move (docs/performance.md).

    .venv/bin/python -m bench.instructions --baseline REV [--out FILE.json]
    .venv/bin/python -m bench.instructions --baseline REV --webhooks noop|sqlite

Each path runs in process, without sockets, under ``valgrind --tool=callgrind`` twice (N1 and
N2 operations); the difference divided by N2 - N1 is the cost of one operation, start-up and
imports cancelled out:

- ``http-publish``: a signed ``POST /apps/1/events`` through ``RequestReader.feed``, the API
  handler (auth check, JSON, routing, publish to one subscriber) and ``serialize``;
- ``client-event``: one ``client-`` event received by the node and fanned out to 9 others;
- ``fanout-1k``: one HTTP-API publish delivered to 1,000 subscribers.

Sockets are fakes whose ``send`` appends to a list, as ``Edge.send`` does. Wall-clock figures
stay in ``make bench``; this is for differences of a few percent, which its noise hides.

``--webhooks`` gives the current tree's app (never the baseline's: a revision may predate
webhooks) the webhooks of ``python -m bench --webhooks`` (client events, channels
occupied/vacated) and the node a webhook sink, the server's ``Recorder``, so every client event
is recorded as in ``ressonance serve``: ``noop`` hands the chunks to a push that keeps nothing
(the event loop's share: the entry, the chunk), ``sqlite`` to the server's ``DatabaseQueue`` on
a SQLite file (its worker thread's INSERTs counted too). Each run ends by waiting for the
chunks to be pushed (``Recorder.close``), so N2 - N1 counts every push. Making the jobs of a
chunk is the leader's work when it posts them, at the receiver's pace: not counted here.
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
from bench.servers import WEBHOOK_EVENTS

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

path, n, hooks, events = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
LIMITS = dict(max_client_events_per_second=0, max_subscriptions_per_second=0,
              max_channels_per_connection=0)
if hooks:  # the current tree only: the baseline may have no webhooks
    from ressonance.models import Webhook
    LIMITS["webhooks"] = (Webhook("http://127.0.0.1:9/hook", tuple(events.split(","))),)
APP = App(id="1", key="key", secret="secret", **LIMITS)

class Sock:
    __slots__ = ("session", "out")
    def __init__(self): self.out = []
    def send(self, frame): self.out.append(frame)
    def close(self, code, reason): pass

async def sink(node, tmp):
    # the server's webhook sink (server.py), on a push that keeps nothing or a SQLite queue
    from ressonance.webhooks.recorder import Recorder
    if hooks == "sqlite":
        from ressonance.storage.sqlite import SqliteDatabase
        from ressonance.webhooks.queue_db import DatabaseQueue
        db = SqliteDatabase(f"{tmp}/webhooks.db")
        await db.start()
        push = DatabaseQueue(db, "bench").push
    else:
        db = None
        async def push(chunk):
            pass
    maker = Recorder(push)
    node.set_webhook_sink(maker)
    node.webhooks.quiet_until = 0.0  # a lone node, as the server sets it
    node.webhooks.set_app(APP.id, APP)
    return maker, db

async def main():
    node = Node(MemoryBroker())
    await node.start()
    maker = db = None
    if hooks:
        import tempfile
        tmp = tempfile.mkdtemp(prefix="ressonance-instr-db-")
        maker, db = await sink(node, tmp)
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
    if maker is not None:
        await maker.close()  # every chunk pushed: counted in N2 - N1
        if path == "client-event" and "client_event" in events.split(","):
            assert maker.pushed >= n and maker.dropped == 0, (maker.pushed, maker.dropped)
        if db is not None:
            await db.close()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)

asyncio.run(main())
"""


def count(
    python: str, src: Path, path: str, n: int, workdir: Path, hooks: str = "", events: str = ""
) -> int:
    """Instructions of one process running ``n`` operations of ``path`` (callgrind's total);
    ``hooks``: "" (no webhooks), "noop" or "sqlite" (see the module docstring), for the
    comma-separated webhook ``events``."""
    out = workdir / f"callgrind.{path}.{n}.{hooks or 'plain'}.{os.getpid()}"
    env = os.environ | {"PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", DRIVER,
         path, str(n), hooks, events or ",".join(WEBHOOK_EVENTS)],
        env=env, check=True, capture_output=True, timeout=1800,
    )  # fmt: skip
    text = out.read_text()
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if found is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(found.group(1))


def per_op(
    python: str, src: Path, path: str, workdir: Path, hooks: str = "", events: str = ""
) -> float:
    n1, n2 = COUNTS[path]
    high = count(python, src, path, n2, workdir, hooks, events)
    return (high - count(python, src, path, n1, workdir, hooks, events)) / (n2 - n1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    p.add_argument("--baseline", required=True, help="git revision to compare the tree with")
    p.add_argument("--only", help="comma-separated paths: " + ",".join(PATHS))
    p.add_argument("--out", type=Path, help="write the figures as JSON here too")
    p.add_argument(
        "--webhooks",
        choices=["noop", "sqlite"],
        help="the current tree's app with webhooks and the server's recorder, pushing to "
        "nothing (noop) or to a SQLite queue (sqlite); the baseline without",
    )
    p.add_argument(
        "--events",
        default=",".join(WEBHOOK_EVENTS),
        help="with --webhooks: the webhook's event types (default: %(default)s, as the bench's)",
    )
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
            now = per_op(sys.executable, current, path, Path(tmp), args.webhooks or "", args.events)
            before = per_op(sys.executable, baseline, path, Path(tmp))
            results[path] = {"current": now, "baseline": before, "ratio": now / before}
    hooks = f" (current: webhooks for {args.events}, {args.webhooks} push)" if args.webhooks else ""
    print(f"instructions per operation, current tree vs {args.baseline} ({commit[:12]}){hooks}")
    print(f"{'path':<14} {'current':>12} {'baseline':>12} {'ratio':>7}")
    for path, r in results.items():
        print(f"{path:<14} {r['current']:>12,.0f} {r['baseline']:>12,.0f} {r['ratio']:>7.3f}")
    document = {
        "baseline": args.baseline,
        "commit": commit,
        "webhooks": args.webhooks,
        "webhook_events": args.events if args.webhooks else None,
        "paths": results,
    }
    print(json.dumps(document))
    if args.out:
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
