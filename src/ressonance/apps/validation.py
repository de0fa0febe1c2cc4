"""What makes an :class:`~ressonance.models.App` valid, whatever it comes from: a TOML
``[[apps]]`` table, ``RESSONANCE_APP_*`` variables, or (with the app store) a database row or
an admin API request, so that every source is checked by the same rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ressonance.errors import ConfigError
from ressonance.models import App

# what a TOML [[apps]] table or RESSONANCE_APP_* may set (``previous`` is the store's own)
APP_FIELDS = {f.name: f for f in dataclasses.fields(App) if f.name != "previous"}
# the limits and flags: everything but identity and credentials (the store's ``settings`` JSON)
SETTINGS_FIELDS = {
    name: f
    for name, f in APP_FIELDS.items()
    if name not in ("id", "key", "secret", "enabled", "name")
}
NOT_NEGATIVE = (
    "max_payload_kb",
    "max_client_events_per_second",
    "max_subscriptions_per_second",
    "max_channels_per_connection",
    "max_connections",
    "max_presence_members",
    "max_presence_member_kb",
    "cache_ttl",
)


def coerce(name: str, value: Any, kind: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or raise ConfigError."""
    text_bool = {
        "1": True,
        "true": True,
        "yes": True,
        "on": True,
        "0": False,
        "false": False,
        "no": False,
        "off": False,
    }
    if kind in (bool, "bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in text_bool:
            return text_bool[value.strip().lower()]
    elif kind in (int, "int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        digits = value.strip().removeprefix("-") if isinstance(value, str) else ""
        if digits.isascii() and digits.isdigit() and len(digits) < 20:  # not "²", not 5,000
            return int(value.strip())
    elif kind in (str, "str"):
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    elif isinstance(value, list | str):  # origins: a TOML array or a comma-separated string
        items = value.split(",") if isinstance(value, str) else value
        return tuple(str(v).strip().rstrip("/").lower() for v in items if str(v).strip())
    raise ConfigError(f"{name}: {value!r} is not a valid {getattr(kind, '__name__', kind)}")


def make_app(values: Mapping[str, Any], where: str) -> App:
    """An :class:`App` from a TOML table or environment values; id, key and secret required."""
    unknown = set(values) - set(APP_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown app setting(s) {', '.join(sorted(unknown))}")
    missing = [k for k in ("id", "key", "secret") if not values.get(k)]
    if missing:
        raise ConfigError(f"{where}: an app needs {', '.join(missing)}")
    kwargs = {k: coerce(f"{where}.{k}", v, APP_FIELDS[k].type) for k, v in values.items()}
    app = App(**kwargs)
    for name in NOT_NEGATIVE:
        if getattr(app, name) < 0:
            raise ConfigError(f"{where}.{name} must not be negative")
    return app
