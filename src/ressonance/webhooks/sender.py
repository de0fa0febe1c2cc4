"""One webhook attempt: a signed HTTP/1.1 POST and what its answer means (docs/webhooks.md,
"Delivery").

The attempt resolves the URL (:mod:`ressonance.webhooks.targets`), connects to that exact
address (TLS with the system's CAs, SNI and the certificate checked against the URL's host),
writes the POST with ``Connection: close``, reads the status line and at most
:data:`MAX_HEADER_BYTES` of headers, and closes: the response body is never read. All of it
within :data:`~ressonance.webhooks.base.ATTEMPT_TIMEOUT` seconds. Only the standard library:
the request is small and fixed, and the status line is all that is needed of the answer.

:meth:`Sender.post` never raises for a network problem; its :class:`Outcome` is

* ``delivered``: a 2xx answer;
* ``retry``: a connection error, a time-out, a DNS failure, a TLS failure, 408, 429 or 5xx.
  A certificate the system does not trust (unknown CA, expired, wrong host) is retried: it is
  usually fixed on the receiver's side within the five minutes of retries, and the job ends as a
  dead letter that names it, replayable, if it is not;
* ``final``: any other status (4xx, 3xx), or a URL the app may not post to (a tenant's private
  target). Redirects are not followed: the signature covers the body, not the URL, and a
  tenant's webhook could otherwise be redirected to the private addresses it may not reach;
  the receiver's URL should be fixed instead.

The reason is short and never leaks more than the receiver said: ``"503"``, ``"timeout"``,
``"connection refused"``, ``"tls: certificate verify failed (...)"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from dataclasses import dataclass
from typing import Literal

from ressonance.webhooks.base import ATTEMPT_TIMEOUT, Job
from ressonance.webhooks.signing import headers_for
from ressonance.webhooks.targets import Refused, Target, Unresolved, resolve

USER_AGENT = "Ressonance-Webhooks/1"
MAX_HEADER_BYTES = 16 * 1024  # of the answer's status line and headers; the rest is not read
CLOSE_TIMEOUT = 1.0  # seconds to close the connection once the status is known
MAX_INTERIM = 5  # 1xx answers skipped before the final status
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?:[ \t][^\r\n]*)?\r?\n")

Kind = Literal["delivered", "retry", "final"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: ``kind`` and a short ``reason`` (the status, or the error)."""

    kind: Kind
    reason: str


class BadResponse(Exception):
    """The peer's answer is not an HTTP/1.x response within the bounds."""


def classify(status: int) -> Outcome:
    """The outcome of an HTTP status."""
    if 200 <= status < 300:
        return Outcome("delivered", str(status))
    if status in (408, 429) or status >= 500:
        return Outcome("retry", str(status))
    if 300 <= status < 400:
        return Outcome("final", f"{status} (redirects are not followed)")
    return Outcome("final", str(status))


def request_bytes(target: Target, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """The POST: request line, Host, the signed and configured headers, then ours."""
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"User-Agent: {USER_AGENT}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_status(reader: asyncio.StreamReader) -> int:
    """The final status of the answer; its headers are read (bounded) and dropped."""
    budget = MAX_HEADER_BYTES
    for _ in range(MAX_INTERIM + 1):
        try:
            line = await reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise BadResponse("no HTTP response") from exc
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            raise BadResponse("not an HTTP response")
        status = int(match.group(1))
        budget -= len(line)
        while budget > 0:  # the headers: read to their end, or to the budget
            try:
                line = await reader.readuntil(b"\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                break
            budget -= len(line)
            if line in (b"\r\n", b"\n"):
                break
        else:
            if status < 200:
                raise BadResponse("response headers too large")
        if status >= 200:
            return status
    raise BadResponse("too many interim responses")


def _error_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: certificate verify failed ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc.reason or 'handshake failed'}".lower()
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return "connection failed"


class Sender:
    """Posts webhook attempts. ``ssl_context`` defaults to :func:`ssl.create_default_context`
    (the system's CAs); ``timeout`` bounds a whole attempt."""

    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, timeout: float = ATTEMPT_TIMEOUT
    ) -> None:
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.timeout = timeout

    async def post(self, job: Job, key: str, secret: str, allow_private: bool) -> Outcome:
        """One attempt of ``job`` signed with ``key``/``secret``; never raises for the network
        (a cancellation still propagates)."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                target = await resolve(job.url, allow_private)
                headers = headers_for(job, key, secret, time.time())
                reader, writer = await asyncio.open_connection(
                    target.address,
                    target.port,
                    ssl=self.ssl_context if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                    limit=MAX_HEADER_BYTES,
                )
                writer.write(request_bytes(target, headers, job.body))
                await writer.drain()
                return classify(await read_status(reader))
        except Refused as exc:
            return Outcome("final", exc.message)
        except Unresolved as exc:
            return Outcome("retry", exc.message)
        except TimeoutError:
            return Outcome("retry", "timeout")
        except BadResponse as exc:
            return Outcome("retry", f"bad response: {exc}")
        except (OSError, EOFError) as exc:
            return Outcome("retry", _error_reason(exc))
        finally:
            if writer is not None:
                await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
