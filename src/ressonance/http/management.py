"""The management API on the admin listener: ``/api/v1/apps`` (docs/apps.md, "The management
API") and the webhooks' ``/api/v1/dead-letters`` (docs/webhooks.md, "Managing webhooks"); the
OpenAPI document is ``GET /api/v1/openapi.json``, :mod:`ressonance.http.openapi`.

The admin handler authenticates first (bearer token or dashboard session); requests here are
JSON, responses JSON, errors ``{"error", "code"}`` (plus ``"field"`` for a 400) with the status
of :mod:`ressonance.apps.manage`.
"""

from __future__ import annotations

import re
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from ressonance.apps.manage import AppManager, Invalid
from ressonance.errors import HttpError
from ressonance.exchange import Request, Response
from ressonance.http.health import json_response
from ressonance.http.openapi import document
from ressonance.protocol import messages

PREFIX = "/api/v1/"
_APPS = "/api/v1/apps"
_ONE = re.compile(r"/api/v1/apps/([^/]+)")
_ACTION = re.compile(r"/api/v1/apps/([^/]+)/(rotate-secret|enable|disable)")
_LETTERS = "/api/v1/dead-letters"
_REPLAY = re.compile(r"/api/v1/dead-letters/([^/]+)/replay")
MAX_LETTERS = 1000  # ?limit= at most


class DeadLetters(Protocol):
    """The webhook queue's dead letters (:class:`ressonance.webhooks.letters.DeadLetterBook`):
    JSON objects, newest first; its errors are ``HttpError`` (503: the queue is unreachable)."""

    async def list(self, app_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    async def replay(self, letter_id: str) -> bool: ...


def error_body(exc: HttpError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.message, "code": exc.status}
    if isinstance(exc, Invalid):
        body["field"] = exc.field
    return body


class Management:
    """Routes ``/api/v1/...`` to the :class:`AppManager` and the webhooks' dead letters."""

    def __init__(self, manager: AppManager, dead_letters: DeadLetters | None = None) -> None:
        self.manager = manager
        self.dead_letters = dead_letters

    async def handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except HttpError as exc:
            return json_response(exc.status, error_body(exc))

    async def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/api/v1/openapi.json":
            _allow(method, "GET")
            return json_response(200, document())
        if path == _APPS:
            _allow(method, "GET", "POST")
            if method == "GET":
                records = await self.manager.records()
                return json_response(200, {"apps": [r.to_json() for r in records]})
            record = await self.manager.create(_body(request))
            return json_response(201, record.to_json())
        if path == _LETTERS or _REPLAY.fullmatch(path):
            return await self._letters(request)
        action = _ACTION.fullmatch(path)
        if action is not None:
            _allow(method, "POST")
            app_id, verb = unquote(action.group(1)), action.group(2)
            if verb == "rotate-secret":
                body = _body(request, optional=True)
                grace = body.get("grace", "24h")
                unknown = set(body) - {"grace"}
                if unknown:
                    raise Invalid(sorted(unknown)[0][:64], "rotate-secret takes only grace")
                record = await self.manager.rotate(app_id, grace)
            else:
                record = await self.manager.set_enabled(app_id, verb == "enable")
            return json_response(200, record.to_json())
        one = _ONE.fullmatch(path)
        if one is not None:
            _allow(method, "GET", "PATCH", "DELETE")
            app_id = unquote(one.group(1))
            if method == "GET":
                return json_response(200, (await self.manager.get(app_id)).to_json())
            if method == "PATCH":
                record = await self.manager.update(app_id, _body(request))
                return json_response(200, record.to_json())
            await self.manager.delete(app_id)
            return Response(204, b"", "application/json")
        raise HttpError(404, "Not found")

    async def _letters(self, request: Request) -> Response:
        if self.dead_letters is None:
            raise HttpError(404, "Not found")
        replay = _REPLAY.fullmatch(request.path)
        if replay is not None:
            _allow(request.method, "POST")
            letter_id = unquote(replay.group(1))
            if not await self.dead_letters.replay(letter_id):
                raise HttpError(404, "No dead letter has this id")
            return json_response(200, {"replayed": letter_id})
        _allow(request.method, "GET")
        query = parse_qs(request.query)
        unknown = set(query) - {"app_id", "limit"}
        if unknown:
            raise Invalid(sorted(unknown)[0][:64], "dead-letters takes only app_id and limit")
        app_id = query.get("app_id", [""])[0] or None
        text = query.get("limit", ["100"])[0]
        if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_LETTERS:
            raise Invalid("limit", f"limit must be a whole number from 1 to {MAX_LETTERS}")
        letters = await self.dead_letters.list(app_id, int(text))
        return json_response(200, {"dead_letters": letters})


def _allow(method: str, *methods: str) -> None:
    if method not in methods:
        raise HttpError(405, f"Use {' or '.join(methods)} for this endpoint")


def _body(request: Request, optional: bool = False) -> dict[str, Any]:
    if not request.body and optional:
        return {}
    try:
        body = messages.loads(request.body or b"")
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Invalid("body", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Invalid("body", "the body must be a JSON object")
    return body
