"""A signed Pusher HTTP API client (docs/protocol.md "HTTP API authentication") built on
http.client, for tests."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from typing import Any
from urllib.parse import urlencode


def signed_query(
    key: str,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    params: dict[str, str] | None = None,
    timestamp: int | None = None,
) -> str:
    """The query string of a signed request, signed here independently of the server's code;
    ``timestamp`` defaults to now."""
    stamp = int(time.time()) if timestamp is None else timestamp
    query = {"auth_key": key, "auth_timestamp": str(stamp), "auth_version": "1.0"}
    query.update(params or {})
    if body:
        query["body_md5"] = hashlib.md5(body).hexdigest()
    pairs = "&".join(f"{k}={v}" for k, v in sorted((k.lower(), v) for k, v in query.items()))
    to_sign = f"{method}\n{path}\n{pairs}"
    query["auth_signature"] = hmac.new(
        secret.encode(), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return urlencode(query)


class Rest:
    """Signed requests for one app over one keep-alive connection."""

    def __init__(self, host: str, port: int, app: dict[str, Any], timeout: float = 10) -> None:
        self.app = app
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.headers: dict[str, str] = {}  # of the last response

    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        raw = b"" if body is None else json.dumps(body).encode()
        query = signed_query(self.app["key"], self.app["secret"], method, path, raw, params)
        headers = {"Content-Type": "application/json"} if raw else {}
        self.conn.request(method, f"{path}?{query}", body=raw or None, headers=headers)
        response = self.conn.getresponse()
        self.headers = dict(response.getheaders())
        data = response.read()
        return response.status, json.loads(data) if data else None

    def trigger(self, channel: str, event: str, data: str, **extra: Any) -> tuple[int, Any]:
        body = {"name": event, "channel": channel, "data": data, **extra}
        return self.request("POST", f"/apps/{self.app['id']}/events", body)

    def channel_info(self, channel: str, info: str = "subscription_count") -> tuple[int, Any]:
        """``GET /apps/{id}/channels/{channel}?info=...``."""
        path = f"/apps/{self.app['id']}/channels/{channel}"
        return self.request("GET", path, params={"info": info})

    def close(self) -> None:
        self.conn.close()
