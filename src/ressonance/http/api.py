"""The Pusher HTTP API on the WebSocket port (docs/protocol.md, "HTTP API reference"), plus
``GET /health`` and ``GET /ready``. Requests in, responses out: no socket here."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from ressonance.apps.base import AppStore
from ressonance.errors import HttpError
from ressonance.exchange import Request, Response
from ressonance.http import auth, health
from ressonance.http.health import Readiness, json_response
from ressonance.models import App
from ressonance.node import queries
from ressonance.node.node import Node
from ressonance.protocol import channels, messages
from ressonance.protocol.messages import dumps

MAX_CHANNELS = 100
MAX_CHANNEL_LIST = 1000  # GET /channels lists at most this many, then says "truncated"
MAX_BATCH = 10
MAX_EVENT_NAME = 200
RETRY_AFTER = 2  # seconds, in a 503 to a publish while the cluster link's outbox is full
_SOCKET_ID = re.compile(r"\d+\.\d+")
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/apps/([^/]+)/events"), "events"),
    ("POST", re.compile(r"/apps/([^/]+)/batch_events"), "batch_events"),
    ("GET", re.compile(r"/apps/([^/]+)/channels"), "channels"),
    ("GET", re.compile(r"/apps/([^/]+)/channels/([^/]+)"), "channel"),
    ("GET", re.compile(r"/apps/([^/]+)/channels/([^/]+)/users"), "users"),
    ("POST", re.compile(r"/apps/([^/]+)/users/([^/]+)/terminate_connections"), "terminate"),
    # The Python SDK 3 posts here without /apps/{id}: the app is the one of auth_key.
    ("POST", re.compile(r"/users/([^/]+)/terminate_connections"), "terminate"),
]

Handler = Callable[[App, list[str], Request, dict[str, str]], Awaitable[Any]]


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": message, "code": status})


class Unavailable(HttpError):
    """503 with ``Retry-After``: the same request may succeed a little later."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(503, message)
        self.retry_after = retry_after


class Api:
    """Routes a parsed :class:`Request` to its handler and renders Pusher's responses."""

    def __init__(
        self,
        node: Node,
        apps: AppStore,
        clock: Callable[[], float] = time.time,
        unready: Readiness | None = None,
        degraded: Readiness | None = None,
    ) -> None:
        self.node = node
        self.apps = apps
        self.clock = clock
        self.unready = unready or node.unready
        self.degraded = degraded
        # (endpoint, status) -> requests answered; read by metrics at scrape time
        self.requests: dict[tuple[str, int], int] = {}
        # app id -> [calls, request body bytes, response body bytes] of successful API calls
        self.by_app: dict[str, list[int]] = {}

    async def handle(self, request: Request) -> Response:
        endpoint = ["other"]  # the route, once known (a label of bounded cardinality)
        try:
            response = await self._route(request, endpoint)
        except HttpError as exc:
            response = error_response(exc.status, exc.message)
            if isinstance(exc, Unavailable):
                response.headers.append(("Retry-After", str(exc.retry_after)))
        key = (endpoint[0], response.status)
        self.requests[key] = self.requests.get(key, 0) + 1
        return response

    async def _route(self, request: Request, endpoint: list[str]) -> Response:
        path = request.path
        if path in ("/health", "/up"):
            endpoint[0] = "health"
            return health.health()
        if path == "/ready":
            endpoint[0] = "ready"
            return health.ready(self.unready, self.degraded)
        if path == "/":
            return Response(200, b"Ressonance: Pusher protocol v7 server\n", "text/plain")
        for method, pattern, name in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            endpoint[0] = name
            if request.method != method:
                raise HttpError(405, f"Use {method} for this endpoint")
            params = auth.parse_query(request.query)
            groups = list(match.groups())
            app = await self._find_app(path, groups, dict(params))
            now = self.clock()
            signed = auth.authenticate(app, request.method, path, params, request.body, now)
            if request.method == "POST":  # actions; a replayed GET only reads (security.md)
                auth.refuse_replay(self.node.claim_signature(*signed, now))
            if not app.enabled:
                raise HttpError(403, "App is disabled")
            handler: Handler = getattr(self, f"_{name}")
            args = [unquote(g) for g in groups]
            response = json_response(200, await handler(app, args, request, dict(params)))
            usage = self.by_app.get(app.id)
            if usage is None:
                usage = self.by_app[app.id] = [0, 0, 0]
            usage[0] += 1
            usage[1] += len(request.body)
            usage[2] += len(response.body)
            return response
        raise HttpError(404, "Not found")

    async def _find_app(self, path: str, groups: list[str], params: dict[str, str]) -> App:
        """The app of ``/apps/{id}/...`` (the id is taken off ``groups``), else of auth_key."""
        if path.startswith("/apps/"):
            app_id = groups.pop(0)
            app = await self.apps.by_id(app_id)
            if app is None:
                raise HttpError(404, f"App {app_id[:64]!r} not found")
            return app
        app = await self.apps.by_key(params.get("auth_key", ""))
        if app is None:
            raise HttpError(401, "Unknown or missing auth_key")
        return app

    # POST /apps/{id}/events --------------------------------------------------------------
    async def _events(self, app: App, _: list[str], request: Request, __: dict[str, str]) -> Any:
        body = _json_body(request)
        names = body.get("channels")
        if names is None and "channel" in body:
            names = [body["channel"]]
        event = validate_event(app, body, names)
        attributes = _attributes(body.get("info"))  # a bad info is a 400 before publishing
        self._publishable()
        for channel in event["channels"]:
            self.node.publish(app, channel, event["name"], event["data"], event["socket_id"])
        if not attributes:
            return {}
        stats = [await queries.one_channel(self.node, app, n) for n in event["channels"]]
        entries = {
            n: _entry(st, attributes) for n, st in zip(event["channels"], stats, strict=True)
        }
        return {"channels": entries}

    async def _batch_events(
        self, app: App, _: list[str], request: Request, __: dict[str, str]
    ) -> Any:
        batch = _json_body(request).get("batch")
        if not isinstance(batch, list) or not batch:
            raise HttpError(400, "batch must be a non-empty array of events")
        if len(batch) > MAX_BATCH:
            raise HttpError(400, f"batch is limited to {MAX_BATCH} events")
        events = []
        for item in batch:
            if not isinstance(item, dict):
                raise HttpError(400, "each batch item must be an object")
            events.append(validate_event(app, item, [item.get("channel")]))
        infos = [_attributes(item.get("info")) for item in batch]  # a bad info is a 400 first
        self._publishable()
        for event in events:
            (channel,) = event["channels"]
            self.node.publish(app, channel, event["name"], event["data"], event["socket_id"])
        if not any(infos):
            return {}
        return {
            "batch": [
                _entry(await queries.one_channel(self.node, app, e["channels"][0]), attributes)
                for e, attributes in zip(events, infos, strict=True)
            ]
        }

    def _publishable(self) -> None:
        """503 rather than an event silently lost for the other nodes (Node.publishable)."""
        if not self.node.publishable():
            raise Unavailable(
                "The queue to the other nodes is full (cluster link down): retry later", RETRY_AFTER
            )

    # GET /apps/{id}/channels ---------------------------------------------------------------
    async def _channels(self, app: App, _: list[str], __: Request, q: dict[str, str]) -> Any:
        prefix = q.get("filter_by_prefix", "")
        attributes = _attributes(q.get("info"))
        if "user_count" in attributes and not prefix.startswith("presence-"):
            raise HttpError(400, "info=user_count needs filter_by_prefix=presence-")
        stats = await queries.channel_stats(self.node, app, prefix, MAX_CHANNEL_LIST + 1)
        listed = {name: _entry(s, attributes) for name, s in stats.items()}
        if len(listed) <= MAX_CHANNEL_LIST:
            return {"channels": listed}
        listed.popitem()  # Pusher pages nothing: a bounded answer says it is not all
        return {"channels": listed, "truncated": True}

    async def _channel(self, app: App, args: list[str], _: Request, q: dict[str, str]) -> Any:
        (channel,) = args
        _check_channel(channel)
        kind = channels.kind_of(channel)
        attributes = _attributes(q.get("info"))
        if "user_count" in attributes and not kind.presence:
            raise HttpError(400, "user_count is only available for presence channels")
        if "cache" in attributes and not kind.cache:
            raise HttpError(400, "cache is only available for cache channels")
        stats = await queries.one_channel(self.node, app, channel)
        result: dict[str, Any] = {"occupied": stats.subscription_count > 0}
        if "user_count" in attributes:
            result["user_count"] = stats.user_count or 0
        if "subscription_count" in attributes:
            result["subscription_count"] = stats.subscription_count
        if "cache" in attributes:
            cached = queries.cached_event(self.node, app, channel)
            if cached is not None:
                ttl = max(0, round(cached.expires_at - self.node.clock()))
                result["cache"] = {"event": cached.event, "data": cached.data, "ttl": ttl}
        return result

    async def _users(self, app: App, args: list[str], _: Request, q: dict[str, str]) -> Any:
        """``{"users":[{"id"}]}``; ``with_user_info=1`` adds ``user_info`` (as Soketi does)."""
        (channel,) = args
        _check_channel(channel)
        if not channels.kind_of(channel).presence:
            raise HttpError(400, "Users are only available for presence channels")
        members = await queries.channel_users(self.node, app, channel)
        if q.get("with_user_info") in ("1", "true"):
            return {"users": [{"id": uid, "user_info": info} for uid, info in members.items()]}
        return {"users": [{"id": user_id} for user_id in members]}

    async def _terminate(self, app: App, args: list[str], _: Request, __: dict[str, str]) -> Any:
        self.node.terminate_user(app, args[0])
        return {}


def _entry(stats: queries.ChannelStats, attributes: set[str]) -> dict[str, int]:
    """The requested ``info`` attributes of one channel; user_count only where it exists."""
    entry: dict[str, int] = {}
    if "user_count" in attributes and stats.user_count is not None:
        entry["user_count"] = stats.user_count
    if "subscription_count" in attributes:
        entry["subscription_count"] = stats.subscription_count
    return entry


def _json_body(request: Request) -> dict[str, Any]:
    if not request.body:
        raise HttpError(400, "The request needs a JSON body")
    try:
        body = messages.loads(request.body)  # strict UTF-8, depth and surrogates checked
    except UnicodeDecodeError:
        raise HttpError(400, "The body is not UTF-8 text") from None
    except ValueError:
        raise HttpError(400, "The body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "The body must be a JSON object")
    return body


def _attributes(info: Any) -> set[str]:
    if not info:
        return set()
    if not isinstance(info, str):
        raise HttpError(400, "info must be a comma-separated string")
    return {a.strip() for a in info.split(",") if a.strip()}


def _check_channel(name: Any) -> None:
    if not channels.is_valid_name(name):
        raise HttpError(400, f"Invalid channel name {str(name)[:64]!r}")


def validate_event(app: App, body: dict[str, Any], names: Any) -> dict[str, Any]:
    """Check one event of ``/events`` or ``/batch_events`` (docs/protocol.md, "HTTP API
    event validation")."""
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise HttpError(400, "name is required")
    if len(name) > MAX_EVENT_NAME:
        raise HttpError(400, f"name is longer than {MAX_EVENT_NAME} characters")
    if not isinstance(names, list) or not names:
        raise HttpError(400, "channel or channels is required")
    if len(names) > MAX_CHANNELS:
        raise HttpError(400, f"at most {MAX_CHANNELS} channels per event")
    for channel in names:
        _check_channel(channel)
    if "data" not in body:
        raise HttpError(400, "data is required")
    data = body["data"]
    data = data if isinstance(data, str) else dumps(data)
    if len(data.encode()) > app.max_payload_bytes:
        raise HttpError(413, f"data is larger than {app.max_payload_kb} KB")
    socket_id = body.get("socket_id")
    if socket_id is not None and (
        not isinstance(socket_id, str) or _SOCKET_ID.fullmatch(socket_id) is None
    ):
        raise HttpError(400, "socket_id must look like 123.456")
    return {"name": name, "channels": names, "data": data, "socket_id": socket_id}
