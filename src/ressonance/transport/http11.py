"""HTTP/1.1 requests in, responses out. The only module that imports ``httptools``.

Limits owned here: header bytes (431), body bytes (413), malformed requests (400). Chunked
bodies are de-chunked by the parser; keep-alive follows the request.
"""

from __future__ import annotations

import httptools

from ressonance.errors import HttpError
from ressonance.exchange import Request, Response

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100

_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    204: "No Content",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def serialize(response: Response, keep_alive: bool) -> bytes:
    """The response bytes, with Content-Length and the Connection header."""
    lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}"]
    if response.status != 101:
        if response.status != 204:  # RFC 9110 §8.6: no Content-Length on a 204
            lines.append(f"Content-Type: {response.content_type}")
            lines.append(f"Content-Length: {len(response.body)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + response.body


class RequestReader:
    """Feeds bytes to httptools and collects complete requests.

    :meth:`feed` returns the complete requests and, when the last is an upgrade, the bytes
    after it (which belong to the new protocol). Raises :class:`HttpError` for bad input.
    """

    __slots__ = (
        "_body",
        "_body_size",
        "_done",
        "_header_bytes",
        "_headers",
        "_in_head",
        "_in_request",
        "_max_body",
        "_parser",
        "_unparsed_head",
        "_url",
    )

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._reset()
        self._done: list[Request] = []
        self._in_head = False  # a request has begun and its headers are not complete
        self._in_request = False  # a request has begun and is not complete
        self._unparsed_head = 0

    def _reset(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: bytes | bytearray = b""
        self._body_size = 0
        self._header_bytes = 0

    @property
    def between_requests(self) -> bool:
        """No request is partly received (the connection may be closed without cutting one)."""
        return not self._in_request

    def close(self) -> None:
        """Break the reader ↔ parser cycle (the parser holds the reader's callbacks), so both
        are freed as soon as the connection lets go, not at the next full garbage collection."""
        self._parser = None

    def feed(self, data: bytes) -> tuple[list[Request], bytes | None]:
        rest: bytes | None = None
        assert self._parser is not None, "feed() after close()"
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :] if upgrade.args else b""
        except HttpError:
            raise
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, HttpError):
                raise cause from None
            raise HttpError(400, "Malformed HTTP request") from None
        except httptools.HttpParserError:
            raise HttpError(400, "Malformed HTTP request") from None
        if self._in_head:
            # httptools buffers a partial header line itself: bound what it may hold
            self._unparsed_head += len(data)
            if self._unparsed_head > MAX_HEADER_BYTES:
                raise HttpError(431, "Request headers are too large")
        done, self._done = self._done, []
        return done, rest

    # httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self._in_head = True
        self._in_request = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if len(self._headers) >= MAX_HEADERS:
            raise HttpError(431, "Too many headers")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._unparsed_head = 0

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:
            raise HttpError(413, "Request body is too large")
        # A body in one piece is kept as it is; one in many pieces goes into one growing
        # buffer, so a body sent a byte at a time costs its size, not an object per byte.
        if not self._body:
            self._body = body
        elif isinstance(self._body, bytes):
            self._body = bytearray(self._body) + body
        else:
            self._body += body

    def on_message_complete(self) -> None:
        self._in_request = False
        parser = self._parser
        assert parser is not None  # callbacks run only inside feed()
        try:
            parsed = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            raise HttpError(400, "Invalid request target") from None
        self._done.append(
            Request(
                method=parser.get_method().decode("latin-1"),
                path=(parsed.path or b"/").decode("latin-1"),
                query=(parsed.query or b"").decode("latin-1"),
                headers=self._headers,
                body=bytes(self._body),
                keep_alive=parser.should_keep_alive(),
                upgrade=parser.should_upgrade(),
            )
        )

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HttpError(431, "Request headers are too large")
