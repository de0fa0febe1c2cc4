"""Apps as the management API and the CLI see them: the app, its keys with their times, where
it comes from. The hot path reads only the :class:`~ressonance.models.App` inside."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ressonance.apps.validation import SETTINGS_FIELDS, plain
from ressonance.models import App

Source = Literal["store", "config", "development"]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key: str
    secret: str
    created_at: float
    expires_at: float | None = None  # None: until the next rotation

    def active(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True)
class AppRecord:
    """One app; ``keys`` newest first (the first is the app's ``key``/``secret``)."""

    app: App
    keys: tuple[KeyRecord, ...]
    created_at: float = 0.0
    updated_at: float = 0.0
    source: Source = "store"

    @classmethod
    def fixed(cls, app: App, source: Source) -> AppRecord:
        """An app of the configuration file, the environment or the development default."""
        older = (KeyRecord(key, secret, 0.0) for key, secret in app.previous)
        keys = (KeyRecord(app.key, app.secret, 0.0), *older)
        return cls(app, keys, source=source)

    @property
    def read_only(self) -> bool:
        return self.source != "store"

    def next_expiry(self) -> float | None:
        times = [k.expires_at for k in self.keys if k.expires_at is not None]
        return min(times) if times else None

    def at(self, now: float) -> AppRecord | None:
        """This record without the keys expired at ``now``; None when none is left."""
        keys = tuple(k for k in self.keys if k.active(now))
        if keys == self.keys:
            return self
        if not keys:
            return None
        newest, *older = keys
        app = dataclasses.replace(
            self.app,
            key=newest.key,
            secret=newest.secret,
            previous=tuple((k.key, k.secret) for k in older),
        )
        return dataclasses.replace(self, app=app, keys=keys)

    def to_json(self) -> dict[str, Any]:
        """The management API's and the CLI's form: the fields of a TOML ``[[apps]]`` table,
        flat, plus the keys and times."""
        app = self.app
        body: dict[str, Any] = {
            "id": app.id,
            "name": app.name,
            "key": app.key,
            "secret": app.secret,
            "enabled": app.enabled,
        }
        for name in SETTINGS_FIELDS:
            body[name] = plain(getattr(app, name))
        body["keys"] = [
            {
                "key": k.key,
                "secret": k.secret,
                "created_at": k.created_at,
                "expires_at": k.expires_at,
            }
            for k in self.keys
        ]
        body["created_at"] = self.created_at
        body["updated_at"] = self.updated_at
        body["source"] = self.source
        body["read_only"] = self.read_only
        return body


def settings_of(app: App) -> dict[str, Any]:
    """The limits and flags of ``app`` that differ from the defaults (the ``settings`` JSON)."""
    defaults = App(id="", key="", secret="")
    out: dict[str, Any] = {}
    for name in SETTINGS_FIELDS:
        value = getattr(app, name)
        if value != getattr(defaults, name):
            out[name] = plain(value)
    return out


def clash(records: Iterable[AppRecord], app_id: str, keys: Iterable[str]) -> str | None:
    """Which of ``app_id`` or ``keys`` one of ``records`` already has (``"id '1'"``, ``"key
    'k'"``), if any: a stored app may not shadow a configured one."""
    keys = tuple(keys)
    for record in records:
        if record.app.id == app_id:
            return f"id {app_id!r}"
        for key in keys:
            if key in record.app.keys:
                return f"key {key!r}"
    return None
