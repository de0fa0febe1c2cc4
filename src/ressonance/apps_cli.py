"""``ressonance apps ...``: manage the apps of the app store (docs/apps.md), from the command
line. With :mod:`ressonance.cli` the only module that parses argv and prints; ``cli`` exits.

Two ways, one set of rules: on the store directly (the default; the store ``serve`` would open:
``--app-store``, ``--data-dir``, ``--config`` and the ``RESSONANCE_*`` environment) through
:class:`~ressonance.apps.manage.AppManager`, or through a running node's management API
(``--server URL --token TOKEN``) with :class:`~ressonance.admin_client.AdminClient`. Both answer
the API's JSON (``AppRecord.to_json()``) and raise ``HttpError`` with the API's status: a 400
(which names the field) exits with 2, like a usage error; any other failure with 1.

``apps webhooks list|add|remove`` read the app, change its ``webhooks`` list and PATCH it back
(either way); ``apps dead-letters`` and ``apps replay`` read the webhook queue
(docs/webhooks.md, "Managing webhooks"): through a node always, on the store only when the queue
is the store's database (not with a Redis broker, whose queue is in Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TextIO

from ressonance.admin_client import AdminClient, Unreachable
from ressonance.apps.manage import AppManager, Invalid
from ressonance.apps.records import settings_of
from ressonance.apps.validation import SETTINGS_FIELDS
from ressonance.config import Settings, load
from ressonance.errors import ConfigError, HttpError, RessonanceError
from ressonance.models import WEBHOOK_EVENTS, App, Webhook

# one line per setting of OPTION_FIELDS (docs/configuration.md, "Apps"); the default is added
SETTING_HELP = {
    "client_events": "accept client-* events from connections",
    "max_payload_kb": "largest event data, in KiB",
    "max_connections": "connections at once; 0 = unlimited",
    "max_client_events_per_second": "client events per connection and second",
    "max_subscriptions_per_second": "subscriptions per connection and second",
    "max_channels_per_connection": "channels one connection may subscribe to",
    "max_presence_members": "members of one presence channel",
    "max_presence_member_kb": "size of one presence member's user_info, in KiB",
    "subscription_count": "send pusher_internal:subscription_count to subscribers",
    "cache_ttl": "seconds a cache channel keeps its last event; 0 = none",
    "allowed_origins": "origins browsers may connect from, comma-separated; '' = any",
    "webhook_batching": "several webhook events in one POST (docs/webhooks.md)",
}
MAX_LETTERS = 1000  # apps dead-letters --limit at most
# the settings with an option each (webhooks have their own subcommand)
OPTION_FIELDS = {name: f for name, f in SETTINGS_FIELDS.items() if name != "webhooks"}
_DEFAULTS = App(id="", key="", secret="")

APPS_EPILOG = """\
where the apps are (one of):
  on the store (default): the store `ressonance serve` would open, from --app-store,
    --data-dir, --config and RESSONANCE_APP_STORE, RESSONANCE_DATA_DIR (./ressonance-data),
    RESSONANCE_SECRET_KEY (required with PostgreSQL), RESSONANCE_CONFIG; running nodes see a
    change within a second. Apps of the configuration (TOML, RESSONANCE_APP_*) are listed,
    read-only.
  through a running node: --server http://host:9601 (its admin listener) and --token or
    RESSONANCE_ADMIN_TOKEN; the node's /api/v1/apps (docs/apps.md).
exit status: 0 done, 2 bad input (the field is named), 1 any other failure (not found,
read-only, conflict, wrong token, store or node unreachable)."""


class Apps(Protocol):
    """What both ways offer: the management API's operations, answering its JSON."""

    async def records(self) -> list[dict[str, Any]]: ...
    async def get(self, app_id: str) -> dict[str, Any]: ...
    async def create(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def update(self, app_id: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def set_enabled(self, app_id: str, enabled: bool) -> dict[str, Any]: ...
    async def rotate(self, app_id: str, grace: str) -> dict[str, Any]: ...
    async def delete(self, app_id: str) -> None: ...
    async def dead_letters(self, app_id: str | None, limit: int) -> list[dict[str, Any]]: ...
    async def replay(self, letter_id: str) -> dict[str, Any]: ...


class Letters(Protocol):
    """The dead letters of a webhook queue (a :class:`~ressonance.webhooks.base.JobQueue`)."""

    async def dead_letters(self, app_id: str | None = None, limit: int = 100) -> list[Any]: ...
    async def replay(self, job_id: str, now: float) -> Any: ...


REDIS_QUEUE = (
    "with a Redis broker the webhook queue is in Redis, not in the app store: "
    "use --server URL (a node's admin listener) for dead letters and replays"
)


class StoreApps:
    """:class:`AppManager` on the store, answering what the API would; ``letters``: the webhook
    queue on the store's database (None when it is elsewhere: a Redis broker's)."""

    def __init__(self, manager: AppManager, letters: Letters | None = None) -> None:
        self.manager = manager
        self.letters = letters

    async def records(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in await self.manager.records()]

    async def get(self, app_id: str) -> dict[str, Any]:
        return (await self.manager.get(app_id)).to_json()

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.manager.create(body)).to_json()

    async def update(self, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.manager.update(app_id, body)).to_json()

    async def set_enabled(self, app_id: str, enabled: bool) -> dict[str, Any]:
        return (await self.manager.set_enabled(app_id, enabled)).to_json()

    async def rotate(self, app_id: str, grace: str) -> dict[str, Any]:
        return (await self.manager.rotate(app_id, grace)).to_json()

    async def delete(self, app_id: str) -> None:
        await self.manager.delete(app_id)

    async def dead_letters(self, app_id: str | None, limit: int) -> list[dict[str, Any]]:
        letters = await self._queue(lambda q: q.dead_letters(app_id, limit))
        return [letter.to_json() for letter in letters]

    async def replay(self, letter_id: str) -> dict[str, Any]:
        if await self._queue(lambda q: q.replay(letter_id, time.time())) is None:
            raise HttpError(404, "No dead letter has this id")
        return {"replayed": letter_id}

    async def _queue(self, call: Callable[[Letters], Awaitable[Any]]) -> Any:
        if self.letters is None:
            raise ConfigError(REDIS_QUEUE)
        try:
            return await call(self.letters)
        except RessonanceError as exc:  # the storage's errors
            raise HttpError(503, f"The webhook queue cannot be reached: {exc}") from None


# the parser ---------------------------------------------------------------------------------
def _origins(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _common() -> argparse.ArgumentParser:
    """The options of every ``apps`` subcommand: where the apps are, and --json."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON (the API's form)")
    store = common.add_argument_group("on the store (default)")
    store.add_argument("--config", metavar="FILE", help="TOML file (its apps are read-only)")
    store.add_argument(
        "--app-store",
        metavar="URL",
        help="sqlite:///path.db or postgresql://user:pass@host/db (default: sqlite in --data-dir)",
    )
    store.add_argument("--data-dir", metavar="DIR", help="default ./ressonance-data")
    node = common.add_argument_group("through a running node")
    node.add_argument(
        "--server", metavar="URL", help="its admin listener, e.g. http://127.0.0.1:9601"
    )
    node.add_argument(
        "--token",
        help="the admin token (default: RESSONANCE_ADMIN_TOKEN, which keeps it out of ps)",
    )
    return common


def _add_settings(parser: argparse.ArgumentParser, create: bool) -> None:
    """One option per app setting: ``--max-connections N``, ``--client-events/--no-...``."""
    group = parser.add_argument_group(
        "app settings" + ("" if create else " (unchanged if not given)")
    )
    for name, field in OPTION_FIELDS.items():
        option = "--" + name.replace("_", "-")
        text = SETTING_HELP.get(name, "see docs/configuration.md")
        if create:
            default = getattr(_DEFAULTS, name)
            shown = ("on" if default else "off") if isinstance(default, bool) else default
            text += f" (default {shown if shown != () else 'any'})"
        if field.type in (bool, "bool"):
            group.add_argument(option, action=argparse.BooleanOptionalAction, help=text)
        elif field.type in (int, "int"):
            group.add_argument(option, type=int, metavar="N", help=text)
        elif field.type in (str, "str"):
            group.add_argument(option, metavar="TEXT", help=text)
        else:
            group.add_argument(option, type=_origins, metavar="A,B", help=text)


def add_apps_parser(commands: Any) -> None:
    """``apps`` and its subcommands, under ``commands`` (the top parser's subparsers)."""
    apps = commands.add_parser(
        "apps",
        help="create, list, change, rotate and delete apps (docs/apps.md)",
        description="Manage the apps of the app store, on the store or through a running node.",
        epilog=APPS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = apps.add_subparsers(dest="apps_command", metavar="ACTION", required=True)
    common = _common()

    def action(name: str, text: str) -> argparse.ArgumentParser:
        return _subcommand(actions, common, name, text)

    create = action("create", "create an app; prints its id, key, secret and a Laravel .env")
    create.add_argument("--name", required=True, help="what the app is called")
    create.add_argument("--id", help="the app id (default: a generated number)")
    create.add_argument("--key", help="the app key (default: generated)")
    create.add_argument("--secret", help="the app secret (default: generated)")
    _add_settings(create, create=True)
    action("list", "list every app (configured ones marked read-only)")
    show = action("show", "show one app, its keys and settings")
    show.add_argument("app_id", metavar="ID")
    update = action("update", "change an app's name or settings")
    update.add_argument("app_id", metavar="ID")
    update.add_argument("--name", help="a new name")
    _add_settings(update, create=False)
    rotate = action(
        "rotate-secret", "give an app a new key and secret; the old pair works for --grace"
    )
    rotate.add_argument("app_id", metavar="ID")
    rotate.add_argument(
        "--grace",
        default="24h",
        metavar="DURATION",
        help="how long the old key and secret stay valid: 90s, 15m, 24h, 7d or seconds; "
        "at most 30d (default 24h)",
    )
    imported = action(
        "import",
        "copy the [[apps]] of a TOML file into the store with the same ids, keys, secrets and "
        "settings (apps already there are skipped)",
    )
    imported.add_argument("file", metavar="FILE", help="a ressonance TOML file with [[apps]]")
    _add_webhook_parsers(actions, common)
    letters = action(
        "dead-letters", "list webhook POSTs given up after their retries, newest first"
    )
    letters.add_argument("--app", metavar="ID", help="only this app's (default: every app's)")
    letters.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help=f"at most N (1-{MAX_LETTERS}, default 100)",
    )
    replay = action("replay", "post a dead letter again (same webhook-id, attempts reset)")
    replay.add_argument("letter_id", metavar="DEAD_LETTER_ID", help="its id (msg_...)")
    for name, text in (
        ("enable", "let an app's clients connect again"),
        ("disable", "refuse an app's connections and API calls; closes them with 4003"),
        ("delete", "delete an app; closes its connections with 4003"),
    ):
        action(name, text).add_argument("app_id", metavar="ID")


def _subcommand(
    parsers: Any, common: argparse.ArgumentParser, name: str, text: str
) -> argparse.ArgumentParser:
    """One subcommand with the common options."""
    return parsers.add_parser(  # type: ignore[no-any-return]
        name,
        parents=[common],
        help=text,
        description=text[0].upper() + text[1:] + ".",
        epilog=APPS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_webhook_parsers(actions: Any, common: argparse.ArgumentParser) -> None:
    """``apps webhooks list|add|remove``: an app's webhooks (docs/webhooks.md)."""
    text = "list, add or remove an app's webhooks (docs/webhooks.md)"
    hooks = actions.add_parser("webhooks", help=text, description=text[0].upper() + text[1:])
    verbs = hooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        parser = _subcommand(verbs, common, name, text)
        parser.add_argument("app_id", metavar="ID")
        return parser

    verb("list", "list an app's webhooks")
    add = verb("add", "add a webhook to an app")
    add.add_argument("--url", required=True, help="where to POST: an http:// or https:// URL")
    add.add_argument(
        "--event-types",
        required=True,
        type=_origins,
        metavar="A,B",
        help="events to send, comma-separated: " + ", ".join(WEBHOOK_EVENTS),
    )
    add.add_argument("--starts-with", metavar="P", help="only channels whose name starts with P")
    add.add_argument("--ends-with", metavar="S", help="only channels whose name ends with S")
    add.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header of its own on every POST (repeat for more)",
    )
    remove = verb("remove", "remove a webhook from an app")
    which = remove.add_mutually_exclusive_group(required=True)
    which.add_argument("--url", help="the webhook(s) posting to this URL")
    which.add_argument("--index", type=int, metavar="N", help="the Nth of `webhooks list` (1..)")


# running ------------------------------------------------------------------------------------
def _body(args: argparse.Namespace, *identity: str) -> dict[str, Any]:
    names = (*identity, *OPTION_FIELDS)
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


async def perform(args: argparse.Namespace, apps: Apps) -> Any:
    """The subcommand, on ``apps``: the record(s) it answers (None for delete)."""
    command = args.apps_command
    if command == "create":
        return await apps.create(_body(args, "name", "id", "key", "secret"))
    if command == "list":
        return await apps.records()
    if command == "show":
        return await apps.get(args.app_id)
    if command == "update":
        body = _body(args, "name")
        if not body:
            raise Invalid("body", "nothing to change: give --name or a setting option")
        return await apps.update(args.app_id, body)
    if command == "rotate-secret":
        return await apps.rotate(args.app_id, args.grace)
    if command in ("enable", "disable"):
        return await apps.set_enabled(args.app_id, command == "enable")
    if command == "import":
        return await import_apps(apps, file_apps(args.file))
    if command == "webhooks":
        return await change_webhooks(args, apps)
    if command == "dead-letters":
        if not 1 <= args.limit <= MAX_LETTERS:
            raise Invalid("limit", f"--limit must be from 1 to {MAX_LETTERS}")
        return await apps.dead_letters(args.app, args.limit)
    if command == "replay":
        return await apps.replay(args.letter_id)
    await apps.delete(args.app_id)
    return None


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise Invalid("header", f"{text[:64]!r} is not 'Name: value'")
    return name.strip(), value.strip()


def new_webhook(args: argparse.Namespace) -> dict[str, Any]:
    """The webhook of ``apps webhooks add``, in the API's form (checked by the API)."""
    hook = Webhook(
        args.url,
        tuple(args.event_types),
        args.starts_with or "",
        args.ends_with or "",
        tuple(dict(_header(text) for text in args.header).items()),
    )
    return hook.to_json()


async def change_webhooks(args: argparse.Namespace, apps: Apps) -> dict[str, Any]:
    """``apps webhooks ...``: read the app, change its webhooks, PATCH them back; the app's
    ``{"id", "webhooks"}`` after."""
    record = await apps.get(args.app_id)
    hooks = list(record.get("webhooks") or [])
    command = args.webhooks_command
    if command == "list":
        return {"id": record["id"], "webhooks": hooks}
    if command == "add":
        hooks.append(new_webhook(args))
    elif args.url is not None:
        kept = [hook for hook in hooks if hook.get("url") != args.url]
        if len(kept) == len(hooks):
            raise Invalid("url", f"app {record['id']} has no webhook posting to {args.url}")
        hooks = kept
    else:
        if not 1 <= args.index <= len(hooks):
            raise Invalid(
                "index", f"app {record['id']} has {len(hooks)} webhook(s): 1..{len(hooks)}"
            )
        del hooks[args.index - 1]
    record = await apps.update(args.app_id, {"webhooks": hooks})
    return {"id": record["id"], "webhooks": record.get("webhooks") or []}


def file_apps(path: str) -> tuple[App, ...]:
    """The ``[[apps]]`` of a TOML file, checked as ``serve --config`` checks them."""
    settings = load(env={}, config_file=path)
    if settings.dev_app:
        raise Invalid("file", f"{path} has no [[apps]] table")
    return settings.apps


async def import_apps(apps: Apps, found: tuple[App, ...]) -> list[dict[str, str]]:
    """Create each app with its own id, key and secret; one ``{"id", "status", "message"}`` per
    app: ``created``, or ``skipped`` with the reason (already stored, a configured app has
    it). Running it twice creates nothing the second time."""
    outcome = []
    for app in found:
        body: dict[str, Any] = {
            "id": app.id,
            "key": app.key,
            "secret": app.secret,
            "name": app.name or f"app {app.id}",
            "enabled": app.enabled,
            **settings_of(app),
        }
        try:
            await apps.create(body)
        except HttpError as exc:
            if exc.status != 409:
                raise
            outcome.append({"id": app.id, "status": "skipped", "message": exc.message})
        else:
            outcome.append({"id": app.id, "status": "created", "message": ""})
    return outcome


async def _on_store(settings: Settings, work: Callable[[Apps], Awaitable[Any]]) -> Any:
    from ressonance.server import app_database, fixed_apps, open_store, webhook_queue

    database = app_database(settings)
    await open_store(database, settings)
    try:
        # the development app runs only while the store is empty: it is no app to manage
        fixed = () if settings.dev_app else tuple(fixed_apps(settings))
        redis = settings.broker.startswith(("redis://", "rediss://"))
        letters = None if redis else webhook_queue(settings, database)
        return await work(StoreApps(AppManager(database, fixed=fixed), letters))
    finally:
        await database.db.close()


def run_apps(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run ``ressonance apps ...``: 0 done, 2 bad input, 1 any other failure."""

    def fail(message: str, status: int = 1) -> int:
        err.write(f"ressonance apps: {message}\n")
        return status

    try:
        if args.server:
            if args.config or args.app_store or args.data_dir:
                return fail("--server goes to a node: leave out --config/--app-store/--data-dir", 2)
            token = args.token or os.environ.get("RESSONANCE_ADMIN_TOKEN", "")
            if not token:
                return fail("--server needs --token or RESSONANCE_ADMIN_TOKEN", 2)
            try:
                client = AdminClient(args.server, token)
            except ValueError as exc:
                return fail(f"--server: {exc}", 2)
            result = asyncio.run(perform(args, client))
            host = urllib.parse.urlsplit(args.server).hostname or "127.0.0.1"
            port = None
            if args.apps_command in ("create", "rotate-secret") and not args.json:
                port = asyncio.run(client.public_port())  # for the .env block
            where = (host, port or 6001)
        else:
            try:
                settings = load(
                    cli={"app_store": args.app_store, "data_dir": args.data_dir},
                    env=os.environ,
                    config_file=args.config,
                )
            except ConfigError as exc:
                return fail(f"configuration error: {exc}", 2)
            result = asyncio.run(_on_store(settings, lambda apps: perform(args, apps)))
            shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
            where = (shown, settings.port)
    except HttpError as exc:  # the manager's (Invalid: 400 with a field) or the node's
        field = getattr(exc, "field", None)
        if exc.status == 400:
            return fail(f"invalid {field}: {exc.message}" if field else exc.message, 2)
        return fail(f"{exc.message} ({exc.status})")
    except (ConfigError, Unreachable) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except Exception as exc:  # never a traceback: the type and message
        return fail(f"unexpected {type(exc).__name__}: {exc}")
    _print(args, result, where, out)
    return 0


# printing -----------------------------------------------------------------------------------
def laravel_env(app_id: str, key: str, secret: str, host: str, port: int) -> str:
    """A ready-to-paste Laravel ``.env`` block for one app (docs/laravel.md)."""
    return f"""BROADCAST_CONNECTION=pusher
PUSHER_APP_ID={app_id}
PUSHER_APP_KEY={key}
PUSHER_APP_SECRET={secret}
PUSHER_HOST={host}
PUSHER_PORT={port}
PUSHER_SCHEME=http
PUSHER_APP_CLUSTER=mt1
VITE_PUSHER_APP_KEY="${{PUSHER_APP_KEY}}"
VITE_PUSHER_HOST="${{PUSHER_HOST}}"
VITE_PUSHER_PORT="${{PUSHER_PORT}}"
VITE_PUSHER_SCHEME="${{PUSHER_SCHEME}}"
VITE_PUSHER_APP_CLUSTER="${{PUSHER_APP_CLUSTER}}"
"""


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "any"
    return str(value)


def describe(record: dict[str, Any]) -> str:
    """One app, one ``name: value`` line per field, then its keys."""
    source = record.get("source", "store")
    lines = [
        f"id:       {record['id']}",
        f"name:     {record.get('name', '')}",
        f"enabled:  {_value(record.get('enabled', True))}",
        f"source:   {source}" + (" (read-only)" if record.get("read_only") else ""),
        f"key:      {record['key']}",
        f"secret:   {record['secret']}",
    ]
    width = max(len(name) for name in SETTINGS_FIELDS)
    lines += [f"{n + ':':<{width + 1}} {_value(record[n])}" for n in SETTINGS_FIELDS if n in record]
    lines.append("keys (newest first):")
    for k in record.get("keys", []):
        until = f"until {_when(k['expires_at'])}" if k.get("expires_at") else "no expiry"
        lines.append(f"  {k['key']}  created {_when(k['created_at'])}, {until}")
    if source == "store":
        lines.append(f"created:  {_when(record.get('created_at'))}")
        lines.append(f"updated:  {_when(record.get('updated_at'))}")
    return "\n".join(lines) + "\n"


def _table(records: list[dict[str, Any]]) -> str:
    if not records:
        return "No apps in the store (create one with: ressonance apps create --name NAME).\n"
    rows = [("ID", "NAME", "KEY", "ENABLED", "SOURCE")]
    for r in records:
        source = r.get("source", "store") + (" (read-only)" if r.get("read_only") else "")
        rows.append((r["id"], r.get("name", ""), r["key"], _value(r["enabled"]), source))
    return _rows(rows)


def _rows(rows: Sequence[Sequence[object]]) -> str:
    """Columns, left-aligned, two spaces apart."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(f"{cell!s:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in rows
    )


def webhooks_table(app_id: str, hooks: list[dict[str, Any]]) -> str:
    """An app's webhooks, numbered for ``remove --index``; header names only."""
    if not hooks:
        return f"App {app_id} has no webhooks (add one with: ressonance apps webhooks add).\n"
    rows = [("#", "URL", "EVENT TYPES", "FILTER", "HEADERS")]
    for number, hook in enumerate(hooks, 1):
        found = hook.get("filter") or {}
        shown = [
            f"{where} {found[key]!r}"
            for key, where in (
                ("channel_name_starts_with", "starts with"),
                ("channel_name_ends_with", "ends with"),
            )
            if found.get(key)
        ]
        headers = ", ".join(hook.get("headers") or {}) or "-"
        events = ",".join(hook.get("event_types") or [])
        rows.append((str(number), hook["url"], events, ", ".join(shown) or "-", headers))
    return _rows(rows)


def letters_table(letters: list[dict[str, Any]]) -> str:
    """Dead letters, newest first."""
    if not letters:
        return "No dead letters (webhook POSTs given up are kept 7 days).\n"
    rows = [("ID", "APP", "DEAD AT", "ATTEMPTS", "EVENTS", "URL", "LAST ERROR")]
    for letter in letters:
        rows.append(
            (
                letter["id"],
                letter["app_id"],
                _when(letter["dead_at"]),
                str(letter["attempts"]),
                ",".join(letter["events"]),
                letter["url"],
                letter["last_error"] or "-",
            )
        )
    return _rows(rows)


def _print(args: argparse.Namespace, result: Any, where: tuple[str, int], out: TextIO) -> None:
    command = args.apps_command
    if args.json:
        if command == "list":
            result = {"apps": result}
        elif command == "import":
            result = {"imported": result}
        elif command == "delete":
            result = {"id": args.app_id, "deleted": True}
        elif command == "dead-letters":
            result = {"dead_letters": result}
        out.write(json.dumps(result, indent=2) + "\n")
    elif command == "list":
        out.write(_table(result))
    elif command == "webhooks":
        verb = {"add": "Added a webhook to", "remove": "Removed from"}.get(args.webhooks_command)
        if verb:
            out.write(f"{verb} app {result['id']}: every node applies it within a second.\n\n")
        out.write(webhooks_table(result["id"], result["webhooks"]))
    elif command == "dead-letters":
        out.write(letters_table(result))
    elif command == "replay":
        out.write(f"Dead letter {result['replayed']} queued again (same webhook-id, attempts ")
        out.write("reset): the leader posts it within a second.\n")
    elif command == "import":
        for item in result:
            reason = f": {item['message']}" if item["message"] else ""
            out.write(f"app {item['id']}: {item['status']}{reason}\n")
    elif command == "delete":
        out.write(f"Deleted app {args.app_id}; its connections were closed (4003).\n")
    elif command in ("create", "rotate-secret"):
        r = result
        if command == "create":
            out.write(f"Created app {r['id']} ({r['name']}).\n\n")
        else:
            old = [k for k in r["keys"][1:] if k.get("expires_at")]
            until = f"until {_when(old[0]['expires_at'])}" if old else "no longer"
            out.write(f"New key and secret for app {r['id']}; the old pair works {until}.\n\n")
        out.write(f"  app id:     {r['id']}\n  app key:    {r['key']}\n")
        out.write(f"  app secret: {r['secret']}\n\n")
        out.write("Laravel .env (BROADCAST_CONNECTION=pusher; PUSHER_HOST/PORT: where clients ")
        out.write("reach ressonance):\n\n")
        out.write(laravel_env(r["id"], r["key"], r["secret"], *where))
    else:
        verb = {"update": "Updated", "enable": "Enabled", "disable": "Disabled"}.get(command)
        if verb:
            out.write(f"{verb} app {result['id']}.\n\n")
        out.write(describe(result))
    out.flush()
