"""What makes an :class:`~ressonance.models.App` valid, whatever it comes from: a TOML
``[[apps]]`` table, ``RESSONANCE_APP_*`` variables, or (with the app store) a database row or
an admin API request, so that every source is checked by the same rules."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ressonance.errors import ConfigError
from ressonance.models import WEBHOOK_EVENTS, WEBHOOK_RESERVED_HEADERS, App, Webhook

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
    elif kind == "tuple[Webhook, ...]":
        return parse_webhooks(name, value)
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


MAX_WEBHOOKS = 20  # per app
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")  # an HTTP header name (RFC 9110)


def parse_webhooks(name: str, value: Any) -> tuple[Webhook, ...]:
    """Webhooks from a TOML array of tables, a list of JSON objects, or a JSON string (the
    environment), in Soketi's shape: ``{url, event_types, filter: {channel_name_starts_with,
    channel_name_ends_with}, headers}``. Raises ConfigError naming the field at fault."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise ConfigError(f"{name}: not valid JSON (a list of webhook objects)") from None
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{name}: must be a list of webhooks")
    if len(value) > MAX_WEBHOOKS:
        raise ConfigError(f"{name}: at most {MAX_WEBHOOKS} webhooks per app")
    return tuple(_webhook(f"{name}[{i}]", item) for i, item in enumerate(value))


def _webhook(where: str, item: Any) -> Webhook:
    if isinstance(item, Webhook):
        return item
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be an object with url and event_types")
    unknown = set(item) - {"url", "event_types", "filter", "headers"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    url = item.get("url")
    if not isinstance(url, str):
        raise ConfigError(f"{where}.url: must be an http:// or https:// URL with a host")
    try:
        parts = urlsplit(url)
        scheme, host, _ = parts.scheme, parts.hostname or "", parts.port
    except ValueError:  # a bad port or IPv6 literal
        scheme = host = ""
    if scheme not in ("http", "https") or not host:
        raise ConfigError(f"{where}.url: must be an http:// or https:// URL with a host")
    if len(url) > 2000 or any(c in url for c in "\r\n \t"):
        raise ConfigError(f"{where}.url: too long, or has whitespace")
    events = item.get("event_types")
    if not isinstance(events, list | tuple) or not events:
        raise ConfigError(f"{where}.event_types: a non-empty list of {', '.join(WEBHOOK_EVENTS)}")
    for event in events:
        if event not in WEBHOOK_EVENTS:
            raise ConfigError(
                f"{where}.event_types: unknown event type {str(event)[:40]!r} "
                f"(one of {', '.join(WEBHOOK_EVENTS)})"
            )
    filters = item.get("filter") or {}
    if not isinstance(filters, Mapping):
        raise ConfigError(f"{where}.filter: must be an object")
    unknown = set(filters) - {"channel_name_starts_with", "channel_name_ends_with"}
    if unknown:
        raise ConfigError(
            f"{where}.filter: unknown field(s) {', '.join(sorted(map(str, unknown)))}"
        )
    for key in ("channel_name_starts_with", "channel_name_ends_with"):
        if not isinstance(filters.get(key, ""), str) or len(filters.get(key, "")) > 200:
            raise ConfigError(f"{where}.filter.{key}: must be a string (at most 200 characters)")
    headers = item.get("headers") or {}
    if not isinstance(headers, Mapping) or len(headers) > 20:
        raise ConfigError(f"{where}.headers: an object of at most 20 header names and values")
    pairs = []
    for header, text in headers.items():
        if not isinstance(header, str) or not _TOKEN.fullmatch(header):
            raise ConfigError(f"{where}.headers: {str(header)[:40]!r} is not a header name")
        if header.lower() in WEBHOOK_RESERVED_HEADERS:
            raise ConfigError(f"{where}.headers.{header}: set by Ressonance, cannot be replaced")
        if not isinstance(text, str) or len(text) > 1000 or any(c in text for c in "\r\n\0"):
            raise ConfigError(f"{where}.headers.{header}: a one-line string is needed")
        pairs.append((header, text))
    return Webhook(
        url=url,
        event_types=tuple(dict.fromkeys(events)),
        channel_name_starts_with=filters.get("channel_name_starts_with", ""),
        channel_name_ends_with=filters.get("channel_name_ends_with", ""),
        headers=tuple(pairs),
    )


def plain(value: Any) -> Any:
    """A setting's value as JSON: tuples as lists, webhooks as their objects."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, Webhook):
        return value.to_json()
    return value
