"""Settings from CLI flags, the environment (``RESSONANCE_*``) and a TOML file, validated once.

Precedence: CLI flag > environment > TOML file > default. Every name is documented in
docs/configuration.md; an unknown key in the file is an error, so a typo never goes unnoticed.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ressonance.apps.static import check_unique
from ressonance.apps.validation import coerce, make_app
from ressonance.errors import ConfigError
from ressonance.models import App
from ressonance.scaling.factory import check_url as check_broker_url
from ressonance.storage.factory import check_url as check_store_url

DEV_APP = App(id="100001", key="ressonance-dev-key", secret="ressonance-dev-secret")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Settings:
    """Server-wide settings (docs/configuration.md "Server")."""

    host: str = "0.0.0.0"
    port: int = 6001
    activity_timeout: int = 120
    pong_timeout: int = 30
    max_message_kb: int = 100
    write_buffer_kb: int = 1024
    slow_consumer: str = "close"
    max_request_kb: int = 1024
    handshake_timeout: int = 10
    keep_alive_timeout: int = 30
    max_http_connections: int = 1024
    log_level: str = "info"
    log_format: str = "text"
    broker: str = "memory"
    broker_prefix: str = "ressonance"
    node_id: str = ""
    region: str = ""
    node_timeout: int = 10
    workers: int = 1
    replay_guard: bool = False
    replay_guard_size: int = 100_000
    admin_host: str = "127.0.0.1"
    admin_port: int = 9601
    admin_token: str = ""
    admin_metrics_auth: bool = False
    metrics_app_labels: str = ""  # "" none, "*" every app, else comma-separated app ids
    metrics_compat: str = ""
    app_store: str = ""  # a storage URL; "": the SQLite file under data_dir
    data_dir: str = "ressonance-data"
    secret_key: str = ""  # seals app secrets in the store; "": data_dir/secret.key (SQLite)
    webhooks_allow_private_targets: bool = False  # stored apps' webhooks may reach private IPs
    apps: tuple[App, ...] = field(default=())
    dev_app: bool = False
    admin_token_generated: bool = False  # no admin_token was set: one was made for this run


_SERVER_KEYS = {f.name for f in dataclasses.fields(Settings)} - {
    "apps",
    "dev_app",
    "admin_token_generated",
}
_POSITIVE = {
    "port",
    "activity_timeout",
    "pong_timeout",
    "max_message_kb",
    "write_buffer_kb",
    "max_request_kb",
    "handshake_timeout",
    "keep_alive_timeout",
    "max_http_connections",
    "node_timeout",
    "workers",
    "replay_guard_size",
}


def _env_app(env: Mapping[str, str]) -> App | None:
    prefix = "RESSONANCE_APP_"
    values = {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix) and v}
    if not values:
        return None
    return make_app(values, "environment RESSONANCE_APP_*")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Build the settings: file, then environment, then CLI values that are not None."""
    env = env or {}
    values: dict[str, Any] = {}
    apps: list[App] = []
    path = config_file or env.get("RESSONANCE_CONFIG")
    if path:
        data = _read_file(Path(path))
        file_apps = data.pop("apps", [])
        unknown = set(data) - _SERVER_KEYS
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
        if not isinstance(file_apps, list):
            raise ConfigError(f"{path}: apps must be an array of tables ([[apps]])")
        values.update(data)
        apps.extend(make_app(a, f"{path} [[apps]] #{i + 1}") for i, a in enumerate(file_apps))
    for name in _SERVER_KEYS:
        if f"RESSONANCE_{name.upper()}" in env:
            values[name] = env[f"RESSONANCE_{name.upper()}"]
    values.update({k: v for k, v in (cli or {}).items() if v is not None and k in _SERVER_KEYS})
    env_app = _env_app(env)
    if env_app is not None:
        apps = [a for a in apps if a.id != env_app.id and a.key != env_app.key] + [env_app]
    return _validate(values, apps)


def _validate(values: dict[str, Any], apps: list[App]) -> Settings:
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    labels = values.pop("metrics_app_labels", "")  # true, false, an array or a string
    clean = {k: coerce(k, v, types[k]) for k, v in values.items()}
    clean["metrics_app_labels"] = _app_labels(labels)
    for name in _POSITIVE:
        if name in clean and clean[name] <= 0:
            raise ConfigError(f"{name} must be greater than 0")
    if clean.get("slow_consumer", "close") not in ("close", "drop"):
        raise ConfigError("slow_consumer must be 'close' or 'drop'")
    if clean.get("log_level", "info").lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    if clean.get("log_format", "text") not in ("text", "json"):
        raise ConfigError("log_format must be 'text' or 'json'")
    if not 0 < clean.get("port", 6001) < 65536:
        raise ConfigError("port must be between 1 and 65535")
    _validate_admin(clean)
    _validate_cluster(clean)
    _validate_store(clean)
    check_unique(apps)
    dev = not apps
    return Settings(**clean, apps=tuple(apps) or (DEV_APP,), dev_app=dev)


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def _app_labels(value: object) -> str:
    """``metrics_app_labels`` as ``""`` (none), ``"*"`` (every app) or comma-separated app ids,
    from a TOML boolean or array, or a string (the environment's true/false or ids)."""
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        value = ",".join(value)
    elif isinstance(value, bool):
        return "*" if value else ""
    if not isinstance(value, str):
        raise ConfigError("metrics_app_labels must be true, false or a list of app ids")
    word = value.strip().lower()
    if word in ("true", "yes", "on", "1", "*"):
        return "*"
    if word in ("false", "no", "off", "0"):
        return ""
    return ",".join(x.strip() for x in value.split(",") if x.strip())


def _validate_admin(clean: dict[str, Any]) -> None:
    """The admin listener: a port (0 turns it off), a token (generated for a loopback bind,
    required on any other), the metrics options."""
    port = clean.get("admin_port", 9601)
    if not 0 <= port < 65536:
        raise ConfigError("admin_port must be between 0 (off) and 65535")
    if port and port == clean.get("port", 6001):
        raise ConfigError("admin_port must differ from port")
    host = clean.get("admin_host", "127.0.0.1")
    if port and not clean.get("admin_token"):
        if not is_loopback(host):
            raise ConfigError(
                f"admin_host is {host}, not a loopback address: set RESSONANCE_ADMIN_TOKEN "
                "(admin_token) so that only operators reach the dashboard and admin endpoints, "
                "or bind it to 127.0.0.1"
            )
        clean["admin_token"] = secrets.token_urlsafe(24)
        clean["admin_token_generated"] = True
    if port and len(clean.get("admin_token", "")) < 16:
        raise ConfigError("admin_token must be at least 16 characters")
    if clean.get("metrics_compat", "") not in ("", "soketi"):
        raise ConfigError("metrics_compat must be empty or 'soketi'")


def store_url(settings: Settings) -> str:
    """The app store's URL: ``app_store``, or the SQLite file ``ressonance.db`` in ``data_dir``."""
    return settings.app_store or f"sqlite:///{Path(settings.data_dir) / 'ressonance.db'}"


def _validate_store(clean: dict[str, Any]) -> None:
    """The app store (docs/apps.md): a storage URL, and a secret key shared by every node when
    the store is shared (PostgreSQL)."""
    if not clean.get("data_dir", "ressonance-data").strip():
        raise ConfigError("data_dir must not be empty")
    url = clean.get("app_store", "")
    if url and check_store_url(url) == "postgres" and not clean.get("secret_key"):
        raise ConfigError(
            "app_store is PostgreSQL: set RESSONANCE_SECRET_KEY (secret_key), the same on every "
            "node, so that the app secrets in the database are sealed with a key it does not "
            'hold (docs/apps.md, "Secrets at rest")'
        )
    key = clean.get("secret_key", "")
    if key and len(key) < 32:
        raise ConfigError("secret_key must be at least 32 characters")


def _validate_cluster(clean: dict[str, Any]) -> None:
    """The broker URL, a node id (generated when not set) and the ``workers`` rule."""
    broker = clean.get("broker", "memory")
    check_broker_url(broker)
    if clean.get("workers", 1) > 1 and broker == "memory":
        raise ConfigError(
            "workers > 1 needs a shared broker: with the in-memory broker each worker would "
            "see only its own connections. Set RESSONANCE_BROKER (or --broker) to "
            "redis://host:port/0 or nats://host:port"
        )
    if clean.get("node_timeout", 10) < 3:
        raise ConfigError(
            "node_timeout must be at least 3 seconds: nodes send a heartbeat every second, "
            "and a shorter timeout drops live nodes whenever one heartbeat is late"
        )
    if not clean.get("node_id"):
        clean["node_id"] = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
