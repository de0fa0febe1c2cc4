"""A deliberately slow webhook receiver for `python -m bench --webhooks slow|hang`.

    python -m bench.receiver --port PORT --delay 2 --stats FILE

It accepts any number of POSTs at once on 127.0.0.1, reads each one whole, and answers 200
after ``--delay`` seconds; with ``--delay -1`` it never answers and holds the connection until
the sender gives up (the server's 5 s time-out per attempt). On SIGTERM it writes what it saw
(``requests``, ``answered``, ``events``, ``bytes``) as JSON to ``--stats`` and exits. The bench
starts one for the whole run, on the load generator's core (it does a few requests a second:
the server posts at most 16 at once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from pathlib import Path

READ_TIMEOUT = 10.0  # seconds to read one request
HOLD_MAX = 60.0  # seconds a never-answered request is held at most


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.answered = 0
        self.events = 0
        self.bytes = 0

    def as_json(self) -> dict[str, int]:
        return dict(self.__dict__)


async def handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, stats: Stats
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT)
        stats.requests += 1
        stats.bytes += len(head) + len(body)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            stats.events += len(json.loads(body)["events"])
        if delay < 0:  # never answer: wait for the sender to give up and close
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(), HOLD_MAX)
            return
        await asyncio.sleep(delay)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        stats.answered += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    finally:
        writer.close()


async def serve(port: int, delay: float, stats_file: Path) -> None:
    stats = Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, delay, stats), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await stop.wait()
    stats_file.write_text(json.dumps(stats.as_json()) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.receiver", description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay", type=float, default=2.0, help="seconds before the 200; -1: never")
    p.add_argument("--stats", type=Path, required=True, help="JSON written here on SIGTERM")
    args = p.parse_args()
    asyncio.run(serve(args.port, args.delay, args.stats))


if __name__ == "__main__":
    main()
