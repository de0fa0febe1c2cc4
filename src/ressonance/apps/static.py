"""Apps from the configuration (TOML file or environment), fixed for the process lifetime."""

from __future__ import annotations

from collections.abc import Iterable

from ressonance.errors import ConfigError
from ressonance.models import App


def check_unique(apps: Iterable[App]) -> None:
    """Raises :class:`ConfigError` when two apps share an id (checked first) or a key; the
    configuration checks it at load, the store again for apps given to it directly."""
    apps = tuple(apps)
    for attr in ("id", "key"):
        seen: set[str] = set()
        for app in apps:
            value = getattr(app, attr)
            if value in seen:
                raise ConfigError(f"two apps share the {attr} {value!r}")
            seen.add(value)


class AppIndex:
    """An :class:`~ressonance.apps.base.AppStore` answered from two dicts, by key (every
    active key of an app) and by id: the static store and the app cache alike."""

    def __init__(self) -> None:
        self._by_key: dict[str, App] = {}
        self._by_id: dict[str, App] = {}

    async def by_key(self, key: str) -> App | None:
        return self._by_key.get(key)

    async def by_id(self, app_id: str) -> App | None:
        return self._by_id.get(app_id)

    async def all(self) -> list[App]:
        return list(self._by_id.values())


class StaticAppStore(AppIndex):
    """A fixed list; ids and keys are unique."""

    def __init__(self, apps: Iterable[App]) -> None:
        super().__init__()
        apps = tuple(apps)
        check_unique(apps)
        self._by_key = {key: app for app in apps for key in app.keys}
        self._by_id = {app.id: app for app in apps}
