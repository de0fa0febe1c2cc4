"""A webhook receiver on 127.0.0.1 for the tests: records every POST (request line, headers,
exact body) and answers the status it is set to (None: never answers). It can be stopped and
started again on the same port (a receiver that is down, then up)."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

WAIT = 5.0


@dataclass
class Request:
    line: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int | None = None  # what the receiver answered (None: nothing)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class Receiver:
    """Records each POST and answers ``status`` (None: never answers)."""

    status: int | None = 200
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None
    sni: list[str | None] = field(default_factory=list)

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        """Listen on :attr:`port` (a free one the first time, the same one after a stop)."""
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)  # type: ignore[assignment,misc]
        self.server = await asyncio.start_server(
            self.handle, "127.0.0.1", self.port, ssl=tls, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> list[dict[str, Any]]:
        """Every event of every POST received, in arrival order."""
        return [e for r in self.requests for e in json.loads(r.body)["events"]]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            line, *rest = head.decode().split("\r\n")
            headers = [tuple(h.split(": ", 1)) for h in rest if h]
            length = int(next(v for k, v in headers if k.lower() == "content-length"))
            body = await asyncio.wait_for(reader.readexactly(length), WAIT)
            self.requests.append(Request(line, headers, body, self.status))  # type: ignore[arg-type]
            if self.status is None:
                await asyncio.sleep(WAIT * 2)  # cancelled when the server closes
            writer.write(f"HTTP/1.1 {self.status} Whatever\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), WAIT)
            self.server = None
