"""The Pusher HTTP API in process: an :class:`~ressonance.http.api.Api` on a single
:class:`~ressonance.node.node.Node` with a :class:`MemoryBroker`, fake sockets and a manual
clock; requests are :class:`~ressonance.exchange.Request` objects signed by
:func:`tests.support.rest.signed_query`. No socket, no server process."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ressonance.apps.static import StaticAppStore
from ressonance.exchange import Request, Response
from ressonance.http.api import Api
from ressonance.models import App
from ressonance.node.node import Node
from ressonance.node.replay import ReplayGuard
from ressonance.protocol import signatures
from ressonance.scaling.memory import MemoryBroker
from tests.node.fakes import Clock, FakeSocket
from tests.support.rest import signed_query

NOW = 1_700_000_000
APP = App(id="1", key="key", secret="secret", max_payload_kb=1)
OTHER = App(id="2", key="other-key", secret="other-secret")
DISABLED = App(id="3", key="off-key", secret="off-secret", enabled=False)


def signed_request(
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, str] | None = None,
    app: App = APP,
    secret: str | None = None,
    timestamp: int = NOW,
) -> Request:
    """A request signed for ``app`` (with ``secret`` when given: a wrong one); a body that is
    not bytes is sent as JSON."""
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    query = signed_query(app.key, secret or app.secret, method, path, raw, params, timestamp)
    return Request(method, path, query, {}, raw)


def resign(request: Request, app: App = APP, **changes: str) -> Request:
    """``request`` with query parameters changed, then signed again (a valid signature over
    the changed values)."""
    params = [(k, changes.get(k, v)) for k, v in parse_qsl(request.query) if k != "auth_signature"]
    params += [(k, v) for k, v in changes.items() if k not in dict(params)]
    signature = signatures.api_signature(app.secret, request.method, request.path, params)
    query = urlencode([*params, ("auth_signature", signature)])
    return Request(request.method, request.path, query, request.headers, request.body)


@dataclass
class Reply:
    status: int
    json: Any
    headers: list[tuple[str, str]] = field(default_factory=list)


class InProcessApi:
    """A node with fake sockets and the API over it; :meth:`call` answers one request."""

    def __init__(self, replay_guard: int = 0) -> None:
        self.clock = Clock()
        self.clock.now = float(NOW)
        replay = ReplayGuard(replay_guard) if replay_guard else None
        self.broker = MemoryBroker()
        self.node = Node(self.broker, clock=self.clock, replay=replay)
        asyncio.run(self.node.start())
        self.api = Api(self.node, StaticAppStore([APP, OTHER, DISABLED]), clock=self.clock)

    def handle(self, request: Request) -> Response:
        return asyncio.run(self.api.handle(request))

    def call(self, method: str, path: str, body: Any = None, **signing: Any) -> Reply:
        """Sign and send; the reply's body decoded as JSON (a JSON content type asserted)."""
        return self.send(signed_request(method, path, body, **signing))

    def send(self, request: Request) -> Reply:
        response = self.handle(request)
        assert response.content_type == "application/json", response
        return Reply(response.status, json.loads(response.body), response.headers)

    def connect(self, app: App = APP) -> FakeSocket:
        socket = FakeSocket()
        self.node.connect(socket, app)
        assert socket.take()[0]["event"] == "pusher:connection_established"
        return socket

    def receive(self, socket: FakeSocket, event: str, data: Any) -> None:
        self.node.receive(socket, json.dumps({"event": event, "data": data}))

    def subscribe(
        self, socket: FakeSocket, channel: str, user: str | None = None, app: App = APP
    ) -> None:
        """Subscribe (signed for private-/presence-; as ``user`` on presence), and check the
        node said it succeeded."""
        data: dict[str, Any] = {"channel": channel}
        sid = socket.session.socket_id
        if user is not None:
            data["channel_data"] = json.dumps({"user_id": user, "user_info": {"name": user}})
        if channel.startswith(("private-", "presence-")):
            extra = data.get("channel_data")
            data["auth"] = signatures.channel_auth(app.key, app.secret, sid, channel, extra)
        self.receive(socket, "pusher:subscribe", data)
        events = socket.events()
        assert "pusher_internal:subscription_succeeded" in events, socket.frames
        socket.take()

    def sign_in(self, socket: FakeSocket, user: str, app: App = APP) -> None:
        user_data = json.dumps({"id": user})
        auth = signatures.user_auth(app.key, app.secret, socket.session.socket_id, user_data)
        self.receive(socket, "pusher:signin", {"auth": auth, "user_data": user_data})
        assert socket.events() == ["pusher:signin_success"], socket.frames
        socket.take()
