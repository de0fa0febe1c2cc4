"""App management: what the admin API (``/api/v1/apps``) and ``ressonance apps`` do, with the
same checks and the same errors (docs/apps.md).

Requests are JSON-like dicts; every error is an :class:`~ressonance.errors.HttpError` with the
status the API answers (the CLI turns 400 into exit status 2): 400 :class:`Invalid` names the
field, 403 a configured app (read-only), 404 an unknown id, 409 an id or key already taken, 503
the store cannot be reached. After a write, ``changed(app_id)`` runs: on a node it refreshes the
cache and tells the other nodes; from the CLI on a store it does nothing (the nodes see the
store's revision move within a second).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ressonance.apps.cache import AppCache
from ressonance.apps.database import AppDatabase
from ressonance.apps.records import AppRecord, clash
from ressonance.apps.validation import NOT_NEGATIVE, SETTINGS_FIELDS, coerce
from ressonance.errors import ConfigError, HttpError
from ressonance.models import App
from ressonance.storage.base import Conflict, StorageError, Unavailable

MAX_NAME = 100
MAX_GRACE = 30 * 86400.0  # a rotation's old pair lives at most 30 days
DEFAULT_GRACE = 86400.0
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_SECRET = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, no space
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
CREATE_FIELDS = {"id", "name", "key", "secret", "enabled", *SETTINGS_FIELDS}
UPDATE_FIELDS = {"name", "enabled", *SETTINGS_FIELDS}

Changed = Callable[[str], Awaitable[None]]
T = TypeVar("T")


class Invalid(HttpError):
    """400: the value of ``field`` is refused; the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(400, message)
        self.field = field


def parse_duration(value: object, field: str = "grace") -> float:
    """Seconds from a number or ``90s``, ``15m``, ``24h``, ``7d``; at most 30 days."""
    if isinstance(value, bool):
        raise Invalid(field, f"{field} must be a duration such as 24h, 15m or 3600")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip().lower())):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise Invalid(field, f"{field} must be a duration such as 24h, 15m or 3600")
    if not 0 <= seconds <= MAX_GRACE:
        raise Invalid(field, f"{field} must be between 0 and 30 days")
    return seconds


class AppManager:
    """Create, read, change, rotate and delete apps of a store; configured apps (``fixed``,
    or the cache's) are listed and refused as read-only."""

    def __init__(
        self,
        database: AppDatabase | None,
        cache: AppCache | None = None,
        fixed: tuple[AppRecord, ...] = (),
        changed: Changed | None = None,
    ) -> None:
        self.database = database
        self.cache = cache
        self.fixed = {r.app.id: r for r in (cache.fixed.values() if cache else fixed)}
        self._changed = changed

    # reading ----------------------------------------------------------------------------------
    async def records(self) -> list[AppRecord]:
        if self.cache is not None:  # what this node serves, even while the store is down
            return self.cache.records()
        return [*self.fixed.values(), *(await self._load())]

    async def get(self, app_id: str) -> AppRecord:
        record = self.fixed.get(app_id)
        if record is None and self.cache is not None:
            record = self.cache.record(app_id)
        elif record is None:
            record = await self._store(lambda db: db.get(app_id))
        if record is None:
            raise HttpError(404, f"App {app_id[:64]!r} not found")
        return record

    # writing ----------------------------------------------------------------------------------
    async def create(self, body: Mapping[str, Any]) -> AppRecord:
        values = self._fields(body, CREATE_FIELDS)
        if not isinstance(values.get("name"), str) or not values["name"].strip():
            raise Invalid("name", "name is required: a non-empty string")
        for field, pattern, what in (
            ("id", _ID, "letters, digits, '_', '.' or '-' (at most 64)"),
            ("key", _KEY, "letters, digits, '_', '.' or '-' (at most 128)"),
            ("secret", _SECRET, "printable ASCII without spaces (at most 256)"),
        ):
            if field in values and (
                not isinstance(values[field], str | int)
                or isinstance(values[field], bool)
                or not pattern.fullmatch(str(values[field]))
            ):
                raise Invalid(field, f"{field} must be {what}")
        given_id = str(values.pop("id")) if "id" in values else None
        key = str(values.pop("key", "") or secrets.token_hex(10))
        secret = str(values.pop("secret", "") or secrets.token_hex(16))
        for attempt in range(8):
            app_id = given_id or str(1_000_000 + secrets.randbelow(9_000_000))
            taken = clash(self.fixed.values(), app_id, [key])
            if taken is not None:
                if given_id is None and taken.startswith("id"):
                    continue  # a generated id: draw another
                raise HttpError(409, f"A configured app already has this {taken}")
            app = self._build(App(id=app_id, key=key, secret=secret), values)
            try:
                record = await self._store(functools.partial(AppDatabase.create, app=app))
            except HttpError as exc:
                retry = exc.status == 409 and given_id is None and attempt < 7
                lookup = functools.partial(AppDatabase.get, app_id=app_id)
                if retry and await self._store(lookup) is not None:
                    continue  # the generated id was taken: draw another
                raise
            await self._after(app_id)
            return record
        raise HttpError(409, "No free app id was found: give one")

    async def update(self, app_id: str, body: Mapping[str, Any]) -> AppRecord:
        current = await self._writable(app_id)
        values = self._fields(body, UPDATE_FIELDS)
        if "name" in values and (not isinstance(values["name"], str) or not values["name"].strip()):
            raise Invalid("name", "name must be a non-empty string")
        app = self._build(current.app, values)
        record = await self._store(lambda db: db.update(app))
        if record is None:
            raise HttpError(404, f"App {app_id[:64]!r} not found")
        await self._after(app_id)
        return record

    async def set_enabled(self, app_id: str, enabled: bool) -> AppRecord:
        return await self.update(app_id, {"enabled": enabled})

    async def rotate(self, app_id: str, grace: object = DEFAULT_GRACE) -> AppRecord:
        seconds = parse_duration(grace)
        await self._writable(app_id)
        key, secret = secrets.token_hex(10), secrets.token_hex(16)
        record = await self._store(lambda db: db.rotate(app_id, key, secret, seconds))
        if record is None:
            raise HttpError(404, f"App {app_id[:64]!r} not found")
        await self._after(app_id)
        return record

    async def delete(self, app_id: str) -> None:
        await self._writable(app_id)
        if not await self._store(lambda db: db.delete(app_id)):
            raise HttpError(404, f"App {app_id[:64]!r} not found")
        await self._after(app_id)

    # internals --------------------------------------------------------------------------------
    def _fields(self, body: Mapping[str, Any], allowed: set[str]) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise Invalid("body", "the body must be a JSON object")
        for name in body:
            if name not in allowed:
                hint = (
                    " (use rotate-secret for new credentials)" if name in ("key", "secret") else ""
                )
                raise Invalid(str(name)[:64], f"{str(name)[:64]!r} cannot be set here{hint}")
        return dict(body)

    def _build(self, base: App, values: Mapping[str, Any]) -> App:
        """``base`` with ``values`` checked by the rules of a TOML ``[[apps]]`` table."""
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if name == "name":
                text = str(value).strip()
                if len(text) > MAX_NAME:
                    raise Invalid("name", f"name must be at most {MAX_NAME} characters")
                changes["name"] = text
                continue
            kind = bool if name == "enabled" else SETTINGS_FIELDS[name].type
            try:
                changes[name] = coerce(name, value, kind)
            except ConfigError as exc:
                raise Invalid(name, str(exc)) from None
            if name in NOT_NEGATIVE and changes[name] < 0:
                raise Invalid(name, f"{name} must not be negative")
        return dataclasses.replace(base, **changes)

    async def _writable(self, app_id: str) -> AppRecord:
        record = await self.get(app_id)
        if record.read_only:
            where = (
                "the development default"
                if record.source == "development"
                else "the configuration (TOML file or RESSONANCE_APP_*)"
            )
            raise HttpError(
                403, f"App {app_id!r} comes from {where} and is read-only: change it there"
            )
        if self.cache is not None:  # the cache may lag the store by a second: read the store
            fresh = await self._store(lambda db: db.get(app_id))
            if fresh is None:
                raise HttpError(404, f"App {app_id[:64]!r} not found")
            return fresh
        return record

    async def _load(self) -> list[AppRecord]:
        async def load(db: AppDatabase) -> list[AppRecord]:
            return (await db.load())[1]

        return await self._store(load)

    async def _store(self, action: Callable[[AppDatabase], Awaitable[T]]) -> T:
        if self.database is None:
            raise HttpError(403, "No app store is configured: apps come from the configuration")
        try:
            return await action(self.database)
        except Conflict:
            raise HttpError(409, "An app with this id or key already exists") from None
        except Unavailable as exc:
            raise HttpError(503, f"The app store cannot be reached: {exc}") from None
        except StorageError as exc:
            raise HttpError(500, f"The app store refused the change: {exc}") from None

    async def _after(self, app_id: str) -> None:
        if self._changed is not None:
            await self._changed(app_id)
