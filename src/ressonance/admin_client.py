"""A client of a running node's management API (``/api/v1/apps`` and ``/api/v1/dead-letters``
on the admin listener, docs/apps.md and docs/webhooks.md): what ``ressonance apps --server URL``
calls. Standard library only (urllib), a timeout on every request, the admin token as a bearer
token (never in an error message).

Its methods mirror :class:`ressonance.apps.manage.AppManager` but answer the API's JSON (the
form of :meth:`AppRecord.to_json`); an error answer is raised as :class:`AdminError` with the
API's status and, for a 400, the field.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ressonance.errors import HttpError, RessonanceError

TIMEOUT = 10.0


class AdminError(HttpError):
    """The node answered ``status``; ``field`` names the refused value of a 400."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(status, message)
        self.field = field


class Unreachable(RessonanceError):
    """The node did not answer: refused, timed out, or not an admin listener."""


class AdminClient:
    """Calls ``base_url/api/v1/...`` with ``Authorization: Bearer <token>``."""

    def __init__(self, base_url: str, token: str, timeout: float = TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{base_url!r} is not an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    async def records(self) -> list[dict[str, Any]]:
        apps = (await self._call("GET", "/api/v1/apps")).get("apps")
        if not isinstance(apps, list):
            raise Unreachable(f"{self.base_url} did not answer a list of apps")
        return apps

    async def get(self, app_id: str) -> dict[str, Any]:
        return await self._call("GET", self._path(app_id))

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/apps", body)

    async def update(self, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", self._path(app_id), body)

    async def set_enabled(self, app_id: str, enabled: bool) -> dict[str, Any]:
        verb = "enable" if enabled else "disable"
        return await self._call("POST", self._path(app_id, verb))

    async def rotate(self, app_id: str, grace: str) -> dict[str, Any]:
        return await self._call("POST", self._path(app_id, "rotate-secret"), {"grace": grace})

    async def delete(self, app_id: str) -> None:
        await self._call("DELETE", self._path(app_id))

    async def dead_letters(self, app_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The node's webhook dead letters, newest first (``GET /api/v1/dead-letters``)."""
        query = {"limit": str(limit), **({"app_id": app_id} if app_id else {})}
        path = "/api/v1/dead-letters?" + urllib.parse.urlencode(query)
        letters = (await self._call("GET", path)).get("dead_letters")
        if not isinstance(letters, list):
            raise Unreachable(f"{self.base_url} did not answer a list of dead letters")
        return letters

    async def replay(self, letter_id: str) -> dict[str, Any]:
        """Queue a dead letter again (``POST /api/v1/dead-letters/{id}/replay``)."""
        path = "/api/v1/dead-letters/" + urllib.parse.quote(letter_id, safe="") + "/replay"
        return await self._call("POST", path)

    async def public_port(self) -> int | None:
        """The node's public port (its ``/api/overview``), for the ``.env`` block; None when
        the node does not say."""
        try:
            port = (await self._call("GET", "/api/overview")).get("public", {}).get("port")
        except (HttpError, Unreachable):
            return None
        return port if isinstance(port, int) else None

    @staticmethod
    def _path(app_id: str, action: str = "") -> str:
        path = "/api/v1/apps/" + urllib.parse.quote(app_id, safe="")
        return f"{path}/{action}" if action else path

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request (blocking: the command does one thing at a time); the JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach {self.base_url}: {reason}") from None
        if not raw:
            return {}
        try:
            answer = json.loads(raw)
        except ValueError:
            raise Unreachable(
                f"{self.base_url} did not answer JSON: is it the admin port?"
            ) from None
        if not isinstance(answer, dict):
            raise Unreachable(f"{self.base_url} did not answer a JSON object")
        return answer

    def _error(self, exc: urllib.error.HTTPError) -> AdminError:
        try:
            with exc:
                body = json.loads(exc.read() or b"{}")
        except (ValueError, OSError):
            body = {}
        if not isinstance(body, dict):
            body = {}
        message = str(body.get("error") or exc.reason or "error")
        if exc.code == 401:
            message = "the node refused the admin token (--token or RESSONANCE_ADMIN_TOKEN)"
        elif exc.code == 404 and "error" not in body:
            message = f"{self.base_url} has no management API: is it the admin port?"
        field = body.get("field")
        return AdminError(exc.code, message, field if isinstance(field, str) else None)
