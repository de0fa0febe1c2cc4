"""The admin listener's handler: the dashboard, its JSON API, ``/metrics``, ``/health`` and
``/ready`` (docs/observability.md).

Every route but ``/metrics`` (unless ``admin_metrics_auth``), ``/health``, ``/ready``,
``/login`` and ``/static/*`` needs the admin token: ``Authorization: Bearer <token>``, or the
session cookie that ``POST /login`` sets for the right token (HttpOnly, SameSite=Strict, Secure
over TLS). Tokens are compared in constant time and never logged; sessions live in this
process's memory (a restart logs everyone out) and expire after :data:`SESSION_TTL`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import mimetypes
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from ressonance.apps.base import AppStore
from ressonance.apps.manage import AppManager
from ressonance.errors import HttpError
from ressonance.exchange import Request, Response
from ressonance.http import health
from ressonance.http.api import error_response, validate_event
from ressonance.http.health import Readiness, json_response
from ressonance.http.management import PREFIX, DeadLetters, Management
from ressonance.models import App
from ressonance.node import queries
from ressonance.node.node import Node
from ressonance.protocol import messages

log = logging.getLogger("ressonance.admin")

COOKIE = "ressonance_admin"
SESSION_TTL = 12 * 3600.0  # seconds a login lasts
MAX_SESSIONS = 1000  # the oldest go first: a login storm cannot grow memory
MAX_WAIT = 25.0  # seconds a debug-console long poll may wait
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_APP = re.compile(r"/api/apps/([^/]+)")
_APP_EVENTS = re.compile(r"/api/apps/([^/]+)/events")
_APP_PUBLISH = re.compile(r"/api/apps/([^/]+)/publish")
UNAUTHORIZED = "A valid admin token is needed (Authorization: Bearer <token>)"
_STATIC = re.compile(r"/static/([A-Za-z0-9_.-]+)")


@dataclass(frozen=True, slots=True)
class AdminConfig:
    token: str
    static_dir: Path
    metrics_auth: bool = False
    secure: bool = False  # served over TLS: the cookie gets Secure


class Admin:
    """Routes an admin request; ``metrics`` renders the exposition, ``overview`` the dashboard's
    live figures (both made at the composition root)."""

    def __init__(
        self,
        config: AdminConfig,
        node: Node,
        apps: AppStore,
        metrics: Callable[[], bytes],
        overview: Callable[[], dict[str, Any]],
        app_rates: Callable[[], dict[str, float]],
        unready: Readiness,
        manager: AppManager | None = None,
        degraded: Readiness | None = None,
        clock: Callable[[], float] = time.time,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.config = config
        self.node = node
        self.apps = apps
        self.metrics = metrics
        self.overview = overview
        self.app_rates = app_rates  # app id -> messages per second here
        self.unready = unready
        self.degraded = degraded
        self.management = Management(manager, dead_letters) if manager is not None else None
        self.clock = clock
        self._token = config.token.encode()
        self._sessions: dict[str, float] = {}  # session id -> expiry

    async def handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except HttpError as exc:
            return error_response(exc.status, exc.message)

    async def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/health":
            return health.health()
        if path == "/ready":
            return health.ready(self.unready, self.degraded)
        if path == "/metrics":
            if self.config.metrics_auth:
                self._require(request)
            return Response(200, self.metrics(), METRICS_TYPE)
        if path == "/login":
            if method == "POST":
                return self._login(request)
            return self._static("login.html")
        if path == "/logout":
            return self._logout(request)
        static = _STATIC.fullmatch(path)
        if static is not None:
            return self._static(static.group(1))
        if path in ("/", "/index.html"):
            if not self._authorized(request):
                return Response(303, b"", "text/plain", [("Location", "/login")])
            return self._static("index.html")
        if not path.startswith("/api/"):
            raise HttpError(404, "Not found")
        if path.startswith(PREFIX):
            if self.management is None:
                raise HttpError(404, "Not found")
            if not self._authorized(request):
                return json_response(401, {"error": UNAUTHORIZED, "code": 401})
            self._check_origin(request)
            return await self.management.handle(request)
        self._require(request)
        self._check_origin(request)
        return await self._api(request)

    # authentication --------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return hmac.compare_digest(header[7:].strip().encode(), self._token)
        session = _cookie(request.headers.get("cookie", ""), COOKIE)
        if session is None:
            return False
        expires = self._sessions.get(session)
        if expires is None:
            return False
        if expires < self.clock():
            del self._sessions[session]
            return False
        return True

    def _require(self, request: Request) -> None:
        if not self._authorized(request):
            raise HttpError(401, UNAUTHORIZED)

    @staticmethod
    def _check_origin(request: Request) -> None:
        """A change made with the dashboard's cookie must come from the dashboard's own page:
        a browser sends ``Origin`` with every POST, PATCH and DELETE, and another site's
        differs from this listener's ``Host`` (the cookie's SameSite=Strict is the first
        guard; this is the second). A bearer-token call is not a browser's: no check."""
        if request.method in ("GET", "HEAD"):
            return
        if request.headers.get("authorization", "")[:7].lower() == "bearer ":
            return
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is None or origin.split("://", 1)[-1] != host:
            raise HttpError(403, "Cross-site request refused: send it from the dashboard")

    def _login(self, request: Request) -> Response:
        given = parse_qs(request.body.decode("latin-1")).get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), self._token):
            log.warning("admin login refused (wrong token)")
            return Response(303, b"", "text/plain", [("Location", "/login?error=1")])
        session = secrets.token_urlsafe(32)
        now = self.clock()
        self._sessions = {s: e for s, e in self._sessions.items() if e > now}
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[session] = now + SESSION_TTL
        cookie = f"{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_TTL:.0f}"
        if self.config.secure:
            cookie += "; Secure"
        return Response(303, b"", "text/plain", [("Location", "/"), ("Set-Cookie", cookie)])

    def _logout(self, request: Request) -> Response:
        if request.method != "POST":
            raise HttpError(405, "Use POST for this endpoint")
        session = _cookie(request.headers.get("cookie", ""), COOKIE)
        if session is not None:
            self._sessions.pop(session, None)
        cookie = f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        return Response(303, b"", "text/plain", [("Location", "/login"), ("Set-Cookie", cookie)])

    def _static(self, name: str) -> Response:
        path = self.config.static_dir / name
        if not path.is_file():
            raise HttpError(404, "Not found")
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
            kind += "; charset=utf-8"
        headers = [
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            (
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                "form-action 'self'",
            ),
        ]
        return Response(200, path.read_bytes(), kind, headers)

    # the JSON API ----------------------------------------------------------------------------
    async def _api(self, request: Request) -> Response:
        path = request.path
        if path == "/api/overview":
            return json_response(200, self.overview())
        if path == "/api/apps":
            apps = await self.apps.all()
            rates = self.app_rates()
            return json_response(200, {"apps": [self._app_summary(a, rates) for a in apps]})
        events = _APP_EVENTS.fullmatch(path)
        if events is not None:
            return await self._events(await self._app(events.group(1)), request)
        publish = _APP_PUBLISH.fullmatch(path)
        if publish is not None:
            return self._publish(await self._app(publish.group(1)), request)
        one = _APP.fullmatch(path)
        if one is not None:
            return json_response(200, await self._app_detail(await self._app(one.group(1))))
        raise HttpError(404, "Not found")

    async def _app(self, app_id: str) -> App:
        app = await self.apps.by_id(unquote(app_id))
        if app is None:
            raise HttpError(404, "App not found")
        return app

    def _app_summary(self, app: App, rates: dict[str, float]) -> dict[str, Any]:
        state = self.node.hub.get(app.id)
        rate = rates.get(app.id, 0.0)
        return {
            "id": app.id,
            "key": app.key,
            "enabled": app.enabled,
            "connections": (len(state.sockets) if state else 0)
            + self.node.view.remote_connections(app.id),
            "messages_per_s": rate,
            "channels": queries.occupied_count(self.node, app),
        }

    async def _app_detail(self, app: App) -> dict[str, Any]:
        stats = await queries.channel_stats(self.node, app, "", 1001)
        channels = [
            {"name": name, "subscription_count": s.subscription_count, "user_count": s.user_count}
            for name, s in sorted(stats.items())
        ]
        members = {
            name: sorted(await queries.channel_users(self.node, app, name))
            for name in stats
            if name.startswith("presence-")
        }
        errors = self.node.debug.errors(app.id)
        return {
            "app": self._app_summary(app, self.app_rates()),
            "channels": channels,
            "members": members,
            "errors": errors,
        }

    async def _events(self, app: App, request: Request) -> Response:
        query = parse_qs(request.query)
        try:
            after = int(query.get("after", ["0"])[0])
            wait = min(MAX_WAIT, max(0.0, float(query.get("wait", ["0"])[0])))
        except ValueError:
            raise HttpError(400, "after and wait must be numbers") from None
        debug = self.node.debug
        debug.watch(app.id)
        events, next_seq, dropped = await asyncio.wait_for(
            debug.wait(app.id, after, wait), wait + 5.0
        )
        return json_response(200, {"events": events, "next": next_seq, "dropped": dropped})

    def _publish(self, app: App, request: Request) -> Response:
        if request.method != "POST":
            raise HttpError(405, "Use POST for this endpoint")
        try:
            body = messages.loads(request.body or b"{}")
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "The body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "The body must be a JSON object")
        if "name" not in body and "event" in body:  # the dashboard's form says "event"
            body["name"] = body["event"]
        event = validate_event(app, body, [body.get("channel")])
        if not self.node.publishable():
            raise HttpError(503, "The queue to the other nodes is full: retry later")
        (channel,) = event["channels"]
        self.node.publish(app, channel, event["name"], event["data"])
        return json_response(200, {"ok": True})


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None
