"""Apps from the configuration (TOML file or environment), fixed for the process lifetime."""

from __future__ import annotations

from collections.abc import Iterable

from ressonance.errors import ConfigError
from ressonance.models import App


class StaticAppStore:
    """An :class:`~ressonance.apps.base.AppStore` over a fixed list; ids and keys are unique."""

    def __init__(self, apps: Iterable[App]) -> None:
        self._by_key: dict[str, App] = {}
        self._by_id: dict[str, App] = {}
        for app in apps:
            if app.key in self._by_key:
                raise ConfigError(f"two apps share the key {app.key!r}")
            if app.id in self._by_id:
                raise ConfigError(f"two apps share the id {app.id!r}")
            self._by_key[app.key] = app
            self._by_id[app.id] = app

    async def by_key(self, key: str) -> App | None:
        return self._by_key.get(key)

    async def by_id(self, app_id: str) -> App | None:
        return self._by_id.get(app_id)

    async def all(self) -> list[App]:
        return list(self._by_id.values())
