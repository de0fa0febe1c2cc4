"""The ``ressonance`` command: the only place that parses argv, configures logging, prints or
exits. ``ressonance serve --help`` lists every option; docs/configuration.md every setting."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from ressonance import __version__
from ressonance.apps_cli import add_apps_parser, laravel_env, run_apps
from ressonance.config import LOG_LEVELS, Settings, load
from ressonance.errors import ConfigError

SERVE_EPILOG = """\
environment (flags win over the environment, the environment over the config file):
  RESSONANCE_HOST, RESSONANCE_PORT, RESSONANCE_CONFIG, RESSONANCE_ACTIVITY_TIMEOUT,
  RESSONANCE_PONG_TIMEOUT, RESSONANCE_MAX_MESSAGE_KB, RESSONANCE_WRITE_BUFFER_KB,
  RESSONANCE_SLOW_CONSUMER, RESSONANCE_MAX_REQUEST_KB, RESSONANCE_HANDSHAKE_TIMEOUT,
  RESSONANCE_KEEP_ALIVE_TIMEOUT, RESSONANCE_LOG_LEVEL, RESSONANCE_LOG_FORMAT
limits (docs/security.md):
  RESSONANCE_MAX_HTTP_CONNECTIONS (1024), RESSONANCE_REPLAY_GUARD (false),
  RESSONANCE_REPLAY_GUARD_SIZE (100000)
cluster (docs/cluster.md):
  RESSONANCE_BROKER (memory | redis://host:port/db | nats://host:port),
  RESSONANCE_BROKER_PREFIX (ressonance), RESSONANCE_NODE_ID (generated),
  RESSONANCE_REGION, RESSONANCE_NODE_TIMEOUT (10), RESSONANCE_WORKERS (1)
admin listener: dashboard, /metrics, /health, /ready (docs/observability.md):
  RESSONANCE_ADMIN_HOST (127.0.0.1), RESSONANCE_ADMIN_PORT (9601; 0 = off),
  RESSONANCE_ADMIN_TOKEN (generated and printed on a loopback bind, else required),
  RESSONANCE_ADMIN_METRICS_AUTH (false), RESSONANCE_METRICS_APP_LABELS (false | true | ids),
  RESSONANCE_METRICS_COMPAT ("" | soketi)
app store (docs/apps.md):
  RESSONANCE_APP_STORE (sqlite:///path.db | postgresql://user:pass@host:port/db; default: the
  SQLite file ressonance.db in the data directory), RESSONANCE_DATA_DIR (./ressonance-data),
  RESSONANCE_SECRET_KEY (seals app secrets in the store; required with PostgreSQL, else
  DATA_DIR/secret.key is made)
webhooks (docs/webhooks.md):
  RESSONANCE_WEBHOOKS_ALLOW_PRIVATE_TARGETS (false: webhooks of stored apps may not reach
  loopback, private, link-local or metadata addresses)
one app from the environment (read-only beside the store):
  RESSONANCE_APP_ID, RESSONANCE_APP_KEY, RESSONANCE_APP_SECRET (required together),
  RESSONANCE_APP_NAME,
  RESSONANCE_APP_CLIENT_EVENTS (true), RESSONANCE_APP_MAX_PAYLOAD_KB (10),
  RESSONANCE_APP_MAX_CONNECTIONS (0 = unlimited), RESSONANCE_APP_MAX_CLIENT_EVENTS_PER_SECOND (10),
  RESSONANCE_APP_MAX_SUBSCRIPTIONS_PER_SECOND (128),
  RESSONANCE_APP_MAX_CHANNELS_PER_CONNECTION (128),
  RESSONANCE_APP_MAX_PRESENCE_MEMBERS (100), RESSONANCE_APP_MAX_PRESENCE_MEMBER_KB (1),
  RESSONANCE_APP_SUBSCRIPTION_COUNT (false), RESSONANCE_APP_CACHE_TTL (1800),
  RESSONANCE_APP_ALLOWED_ORIGINS (any), RESSONANCE_APP_ENABLED (true),
  RESSONANCE_APP_WEBHOOKS (a JSON list, Soketi's shape), RESSONANCE_APP_WEBHOOK_BATCHING (false)
with no app configured or stored, a development app is started and its credentials printed.
see docs/configuration.md for the TOML file ([[apps]] tables) and every setting."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ressonance",
        description="Self-hosted real-time server speaking the Pusher Channels protocol v7.",
    )
    parser.add_argument("--version", action="version", version=f"ressonance {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the server (WebSocket /app/{key} and the HTTP API on one port)",
        description="Run the server: WebSocket connections at /app/{key} and the Pusher HTTP "
        "API (/apps/{id}/...) plus GET /health, on one port.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (default 6001)")
    serve.add_argument("--config", metavar="FILE", help="TOML file with settings and [[apps]]")
    serve.add_argument(
        "--activity-timeout",
        type=int,
        metavar="SECONDS",
        help="advertised activity_timeout; silent clients are pinged after it (default 120)",
    )
    serve.add_argument(
        "--pong-timeout",
        type=int,
        metavar="SECONDS",
        help="wait for a pong before closing with 4201 (default 30)",
    )
    serve.add_argument(
        "--broker",
        metavar="URL",
        help="memory (one node, the default), redis://host:port/db or nats://host:port",
    )
    serve.add_argument("--node-id", help="this node's name in the cluster (default: generated)")
    serve.add_argument("--region", help="a label for this node, carried into metrics")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes sharing the port (SO_REUSEPORT); N > 1 needs --broker (default 1)",
    )
    serve.add_argument(
        "--admin-host",
        help="address of the admin listener: dashboard, /metrics, /ready (default 127.0.0.1)",
    )
    serve.add_argument(
        "--admin-port", type=int, help="port of the admin listener; 0 turns it off (default 9601)"
    )
    serve.add_argument(
        "--app-store",
        metavar="URL",
        help="where apps are kept: sqlite:///path.db or postgresql://user:pass@host/db "
        "(default: sqlite in --data-dir)",
    )
    serve.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory of the embedded store: ressonance.db, secret.key (./ressonance-data)",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    serve.add_argument("--log-format", choices=("text", "json"), help="default text")
    add_apps_parser(commands)
    return parser


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, node_id, message, and ``app_id`` /
    ``socket_id`` where the record knows them (``extra=``), then the exception, if any."""

    def __init__(self, node_id: str = "") -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "node_id": getattr(record, "node_id", self.node_id),
            "message": record.getMessage(),
        }
        for field in ("app_id", "socket_id"):
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(settings.node_id))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


def print_dev_app(settings: Settings, out: Any = sys.stdout) -> None:
    """The development app's credentials and a ready-to-paste Laravel ``.env`` block."""
    app = settings.apps[0]
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    out.write(
        f"""
No app is configured: started the DEVELOPMENT app below. It is for development only:
its secret is public. In production create your own apps (ressonance apps create, see
docs/apps.md) or configure them (--config or RESSONANCE_APP_*).

  app id:     {app.id}
  app key:    {app.key}
  app secret: {app.secret}

Laravel .env (BROADCAST_CONNECTION=pusher; for reverb see docs/laravel.md):

{laravel_env(app.id, app.key, app.secret, host, settings.port)}
"""
    )
    out.flush()


def print_dashboard(settings: Settings, out: Any = sys.stdout) -> None:
    """Where the dashboard is; the admin token only when it was generated for this run (a
    configured one is the operator's secret and is never printed)."""
    host = settings.admin_host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{settings.admin_port}/"
    if settings.admin_token_generated:
        out.write(
            f"Dashboard: {url}  (admin token for this run: {settings.admin_token}; set "
            "RESSONANCE_ADMIN_TOKEN to choose one)\n"
        )
    else:
        out.write(f"Dashboard: {url}  (log in with the admin token you configured)\n")
    out.flush()


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = load(
            cli={
                "host": args.host,
                "port": args.port,
                "activity_timeout": args.activity_timeout,
                "pong_timeout": args.pong_timeout,
                "log_level": args.log_level,
                "log_format": args.log_format,
                "broker": args.broker,
                "node_id": args.node_id,
                "region": args.region,
                "workers": args.workers,
                "admin_host": args.admin_host,
                "admin_port": args.admin_port,
                "app_store": args.app_store,
                "data_dir": args.data_dir,
            },
            env=os.environ,
            config_file=args.config,
        )
    except ConfigError as exc:
        print(f"ressonance: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    from ressonance.runtime import prepare, run

    try:
        settings = prepare(settings)
    except ConfigError as exc:
        print(f"ressonance: {exc}", file=sys.stderr)
        return 1
    if settings.dev_app:
        print_dev_app(settings)
        logging.getLogger("ressonance").warning(
            "running with the development app: do not use it in production"
        )
    if settings.admin_port:
        print_dashboard(settings)

    if settings.workers > 1:
        from ressonance.workers import supervise

        return supervise(settings, run)
    try:
        run(settings)
    except OSError as exc:
        print(
            f"ressonance: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "apps":
        return run_apps(args)
    parser.print_help()
    return 0
