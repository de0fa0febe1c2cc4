"""Versioned schema migrations, applied in order when a database starts.

Each :class:`Migration` has a version (strictly increasing), a name, and its statements for
each engine (the types differ; the columns do not). :func:`migrate` runs every version not yet
recorded in ``schema_migrations`` inside one transaction that first takes the database's
migration lock, so two nodes starting together apply each version once: on PostgreSQL
``pg_advisory_xact_lock`` (held until the transaction ends,
https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADVISORY-LOCKS), on
SQLite the ``BEGIN IMMEDIATE`` every SQLite transaction starts with
(https://www.sqlite.org/lang_transaction.html). DDL is transactional on both engines, so a
failed migration leaves nothing behind. A migration once released is never edited: a change is
a new version.

Version 1, the app store's tables:

``schema_migrations``
    ``version`` (primary key), ``name``, ``applied_at`` (Unix time, seconds).
``apps``
    ``id`` the Pusher app id (text, primary key); ``name`` for people; ``enabled`` (a disabled
    app refuses connections and publishes; SQLite answers 0/1, PostgreSQL a boolean: read it
    with ``bool()``); ``settings`` a JSON object as text, the limits and flags of the app
    (``'{}'`` by default); ``created_at``, ``updated_at`` (Unix time, seconds, a float).
``app_keys``
    The credentials of an app, several during a rotation: ``key`` (primary key, so unique:
    the lookup a connection makes), ``app_id`` (deleted with its app), ``secret`` (text, which
    may hold an encrypted form later), ``created_at``, ``expires_at`` (Unix time, NULL: never).

Version 2:

``app_revision``
    One row (``id`` 1) whose ``n`` every write to ``apps`` or ``app_keys`` increments in the
    same transaction: a node reads this one number every second and re-reads the apps only
    when it moved (docs/apps.md, "How a change reaches every node").

Version 3, the webhook queue of a node without Redis (:mod:`ressonance.webhooks.queue_db`):

``webhook_jobs``
    One row per job to post: ``seq`` (auto-increment primary key: push order), ``id`` (the
    ``webhook-id``, unique), ``app_id``, ``url``, ``order_key``, ``body`` (the bytes posted),
    ``events`` and ``headers`` (JSON arrays as text), ``tenant`` (SQLite 0/1, PostgreSQL a
    boolean), ``created_at``, ``attempts``, ``next_at``, ``last_error``, and ``taken_by`` (the
    node posting it, NULL while it waits).
``webhook_dead``
    The dead letters: ``id`` (the job's, primary key), ``app_id``, ``job`` (the whole job as
    JSON, its body in base64), ``dead_at``; indexed on ``dead_at`` and ``app_id``.

Version 4, webhook events kept as chunks (docs/webhooks.md, "Delivery"): a node keeps one row
per chunk of events and the leader makes the jobs when it takes it. ``webhook_jobs`` is no
longer written; :class:`~ressonance.webhooks.queue_db.DatabaseQueue` moves the rows an earlier
build left there into chunks when it starts.

``webhook_chunks``
    ``seq`` (auto-increment primary key: push order), ``id`` (unique), ``created_at``,
    ``size`` (entries), ``taken_by`` (the node posting its jobs, NULL while it waits), and
    last ``data`` (the entries, :func:`ressonance.webhooks.base.pack`: compressed; last, so
    that reading the other columns never walks a large value's overflow pages in SQLite).
    Indexed: the waiting chunks in push order (``take``), and ``size`` (``depth`` reads the
    index alone, every second, however large a backlog is).
``webhook_state``
    The jobs of taken chunks that were tried: ``chunk_id``, ``job_id`` (the primary key: a
    replayed dead letter keeps its job id in a chunk of its own), ``state`` (JSON: attempts,
    next_at, last_error, first_at; or ``{"ended": true}``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ressonance.storage.base import Database, Executor

# pg_advisory_xact_lock key of the migrations: any constant no other lock of this database uses
LOCK_ID = 0x7265_7373  # "ress"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "apps and app_keys",
        sqlite=(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at REAL NOT NULL)",
            "CREATE TABLE apps (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',"
            " enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),"
            " settings TEXT NOT NULL DEFAULT '{}',"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL)",
            "CREATE TABLE app_keys (key TEXT PRIMARY KEY,"
            " app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,"
            " secret TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL)",
            "CREATE INDEX app_keys_app_id ON app_keys (app_id)",
        ),
        postgres=(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at DOUBLE PRECISION NOT NULL)",
            "CREATE TABLE apps (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',"
            " enabled BOOLEAN NOT NULL DEFAULT TRUE, settings TEXT NOT NULL DEFAULT '{}',"
            " created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
            "CREATE TABLE app_keys (key TEXT PRIMARY KEY,"
            " app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,"
            " secret TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
            " expires_at DOUBLE PRECISION)",
            "CREATE INDEX app_keys_app_id ON app_keys (app_id)",
        ),
    ),
    Migration(
        2,
        "app_revision",
        sqlite=(
            "CREATE TABLE app_revision (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)",
            "INSERT INTO app_revision (id, n) VALUES (1, 0)",
        ),
        postgres=(
            "CREATE TABLE app_revision (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL)",
            "INSERT INTO app_revision (id, n) VALUES (1, 0)",
        ),
    ),
    Migration(
        3,
        "webhook jobs",
        sqlite=(
            "CREATE TABLE webhook_jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " id TEXT NOT NULL UNIQUE, app_id TEXT NOT NULL, url TEXT NOT NULL,"
            " order_key TEXT NOT NULL, body BLOB NOT NULL, events TEXT NOT NULL,"
            " headers TEXT NOT NULL, tenant INTEGER NOT NULL CHECK (tenant IN (0, 1)),"
            " created_at REAL NOT NULL, attempts INTEGER NOT NULL, next_at REAL NOT NULL,"
            " last_error TEXT NOT NULL, taken_by TEXT)",
            "CREATE TABLE webhook_dead (id TEXT PRIMARY KEY, app_id TEXT NOT NULL,"
            " job TEXT NOT NULL, dead_at REAL NOT NULL)",
            "CREATE INDEX webhook_dead_dead_at ON webhook_dead (dead_at)",
            "CREATE INDEX webhook_dead_app_id ON webhook_dead (app_id)",
        ),
        postgres=(
            "CREATE TABLE webhook_jobs (seq BIGSERIAL PRIMARY KEY,"
            " id TEXT NOT NULL UNIQUE, app_id TEXT NOT NULL, url TEXT NOT NULL,"
            " order_key TEXT NOT NULL, body BYTEA NOT NULL, events TEXT NOT NULL,"
            " headers TEXT NOT NULL, tenant BOOLEAN NOT NULL,"
            " created_at DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL,"
            " next_at DOUBLE PRECISION NOT NULL, last_error TEXT NOT NULL, taken_by TEXT)",
            "CREATE TABLE webhook_dead (id TEXT PRIMARY KEY, app_id TEXT NOT NULL,"
            " job TEXT NOT NULL, dead_at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX webhook_dead_dead_at ON webhook_dead (dead_at)",
            "CREATE INDEX webhook_dead_app_id ON webhook_dead (app_id)",
        ),
    ),
    Migration(
        4,
        "webhook chunks",
        sqlite=(
            "CREATE TABLE webhook_chunks (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " id TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, size INTEGER NOT NULL,"
            " taken_by TEXT, data BLOB NOT NULL)",
            "CREATE INDEX webhook_chunks_waiting ON webhook_chunks (seq) WHERE taken_by IS NULL",
            "CREATE INDEX webhook_chunks_size ON webhook_chunks (size)",
            "CREATE TABLE webhook_state (chunk_id TEXT NOT NULL, job_id TEXT NOT NULL,"
            " state TEXT NOT NULL, PRIMARY KEY (chunk_id, job_id))",
        ),
        postgres=(
            "CREATE TABLE webhook_chunks (seq BIGSERIAL PRIMARY KEY,"
            " id TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL,"
            " size INTEGER NOT NULL, taken_by TEXT, data BYTEA NOT NULL)",
            "CREATE INDEX webhook_chunks_waiting ON webhook_chunks (seq) WHERE taken_by IS NULL",
            "CREATE INDEX webhook_chunks_size ON webhook_chunks (size)",
            "CREATE TABLE webhook_state (chunk_id TEXT NOT NULL, job_id TEXT NOT NULL,"
            " state TEXT NOT NULL, PRIMARY KEY (chunk_id, job_id))",
        ),
    ),
)

_TABLE_EXISTS = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    "postgres": "SELECT 1 FROM pg_tables"
    " WHERE schemaname = current_schema() AND tablename = 'schema_migrations'",
}


async def _applied(tx: Executor, db: Database) -> set[int]:
    if not await tx.fetch(_TABLE_EXISTS[db.dialect]):
        return set()
    return {int(row["version"]) for row in await tx.fetch("SELECT version FROM schema_migrations")}


async def migrate(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations ``db`` has not recorded yet, in version order; the versions
    applied (empty when the schema is current)."""
    done: list[int] = []
    async with db.transaction() as tx:
        if db.dialect == "postgres":
            await tx.fetch("SELECT pg_advisory_xact_lock(?)", LOCK_ID)
        applied = await _applied(tx, db)
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version in applied:
                continue
            statements = migration.sqlite if db.dialect == "sqlite" else migration.postgres
            for statement in statements:
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                migration.version,
                migration.name,
                time.time(),
            )
            done.append(migration.version)
    return done
