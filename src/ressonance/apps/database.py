"""Apps in a database (the ``apps``, ``app_keys`` and ``app_revision`` tables of
:mod:`ressonance.storage.migrations`), read and written through the storage port.

Every write runs in one transaction that also increments ``app_revision.n``, so that a node
learns that something changed by reading one number (:mod:`ressonance.apps.cache`). Secrets are
sealed by a :class:`~ressonance.apps.crypto.SecretBox` before they reach the database.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ressonance.apps.crypto import SecretBox, SecretKeyMismatch
from ressonance.apps.records import AppRecord, KeyRecord, settings_of
from ressonance.apps.validation import SETTINGS_FIELDS, make_app
from ressonance.errors import ConfigError
from ressonance.models import App
from ressonance.storage.base import Database, Executor

log = logging.getLogger("ressonance.apps")

_BUMP = "UPDATE app_revision SET n = n + 1 WHERE id = 1"
# the current pair (no expiry: a rotation gives every other pair one) first, whatever the
# clocks of the nodes that wrote them say; then the newest
_NEWEST_FIRST = "CASE WHEN expires_at IS NULL THEN 0 ELSE 1 END, created_at DESC, key"


class AppDatabase:
    """Reads and writes apps; every method may raise the storage errors
    (:class:`~ressonance.storage.base.Conflict`, ``Unavailable``, ``StorageError``)."""

    def __init__(
        self, db: Database, box: SecretBox, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.box = box
        self.clock = clock

    async def revision(self) -> int:
        rows = await self.db.fetch("SELECT n FROM app_revision WHERE id = 1")
        return int(rows[0]["n"]) if rows else 0

    async def load(self) -> tuple[int, list[AppRecord]]:
        """The revision and every app with its active keys, read in one transaction (so the
        revision is the one of what was read). An app that cannot be read (a secret sealed
        under another key, a setting out of range) is left out and logged."""
        now = self.clock()
        async with self.db.transaction() as tx:
            revision = await tx.fetch("SELECT n FROM app_revision WHERE id = 1")
            apps = await tx.fetch("SELECT * FROM apps ORDER BY created_at, id")
            keys = await tx.fetch(
                "SELECT * FROM app_keys WHERE expires_at IS NULL OR expires_at > ?"
                " ORDER BY " + _NEWEST_FIRST,
                now,
            )
        by_app: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in keys:
            by_app[row["app_id"]].append(row)
        records = []
        for row in apps:
            record = self._record(row, by_app.get(row["id"], []))
            if record is not None:
                records.append(record)
        return (int(revision[0]["n"]) if revision else 0), records

    async def get(self, app_id: str) -> AppRecord | None:
        now = self.clock()
        async with self.db.transaction() as tx:
            rows = await tx.fetch("SELECT * FROM apps WHERE id = ?", app_id)
            keys = await tx.fetch(
                "SELECT * FROM app_keys WHERE app_id = ? AND (expires_at IS NULL OR expires_at > ?)"
                " ORDER BY " + _NEWEST_FIRST,
                app_id,
                now,
            )
        return self._record(rows[0], keys) if rows else None

    async def create(self, app: App) -> AppRecord:
        """Insert ``app`` with its key; :class:`Conflict` when the id or the key is taken."""
        now = self.clock()
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO apps (id, name, enabled, settings, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                app.id,
                app.name,
                self._bool(app.enabled),
                json.dumps(settings_of(app), sort_keys=True),
                now,
                now,
            )
            await self._add_key(tx, app.id, app.key, app.secret, now)
            await tx.execute(_BUMP)
        return AppRecord(app, (KeyRecord(app.key, app.secret, now),), now, now)

    async def update(self, app: App) -> AppRecord | None:
        """Store the name, the enabled flag and the settings of ``app`` (not its keys); None
        when no app has its id."""
        now = self.clock()
        async with self.db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE apps SET name = ?, enabled = ?, settings = ?, updated_at = ? WHERE id = ?",
                app.name,
                self._bool(app.enabled),
                json.dumps(settings_of(app), sort_keys=True),
                now,
                app.id,
            )
            if not changed:
                return None
            await tx.execute(_BUMP)
        return await self.get(app.id)

    async def delete(self, app_id: str) -> bool:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM app_keys WHERE app_id = ?", app_id)
            deleted = await tx.execute("DELETE FROM apps WHERE id = ?", app_id)
            if deleted:
                await tx.execute(_BUMP)
        return bool(deleted)

    async def rotate(self, app_id: str, key: str, secret: str, grace: float) -> AppRecord | None:
        """Add the pair (``key``, ``secret``) as the app's newest. The pair that was newest
        stays valid for ``grace`` seconds more (0: not at all); any older pair still in its
        grace period is retired now, so an app has at most two active pairs. None when no app
        has this id."""
        now = self.clock()
        async with self.db.transaction() as tx:
            if not await tx.fetch("SELECT id FROM apps WHERE id = ?", app_id):
                return None
            current = await tx.fetch(
                "SELECT key FROM app_keys WHERE app_id = ? AND expires_at IS NULL", app_id
            )
            await tx.execute(
                "DELETE FROM app_keys WHERE app_id = ? AND expires_at IS NOT NULL", app_id
            )
            if grace > 0:
                await tx.execute(
                    "UPDATE app_keys SET expires_at = ? WHERE app_id = ? AND expires_at IS NULL",
                    now + grace,
                    app_id,
                )
            else:
                for row in current:
                    await tx.execute("DELETE FROM app_keys WHERE key = ?", row["key"])
            await self._add_key(tx, app_id, key, secret, now)
            await tx.execute("UPDATE apps SET updated_at = ? WHERE id = ?", now, app_id)
            await tx.execute(_BUMP)
        return await self.get(app_id)

    async def purge_expired(self) -> int:
        """Delete the keys whose grace period is over; how many."""
        async with self.db.transaction() as tx:
            count = await tx.execute(
                "DELETE FROM app_keys WHERE expires_at IS NOT NULL AND expires_at <= ?",
                self.clock(),
            )
            if count:
                await tx.execute(_BUMP)
        return count

    async def _add_key(self, tx: Executor, app_id: str, key: str, secret: str, now: float) -> None:
        await tx.execute(
            "INSERT INTO app_keys (key, app_id, secret, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, NULL)",
            key,
            app_id,
            self.box.seal(secret),
            now,
        )

    def _bool(self, value: bool) -> bool | int:
        return value if self.db.dialect == "postgres" else int(value)

    def _record(self, row: dict[str, Any], key_rows: list[dict[str, Any]]) -> AppRecord | None:
        app_id = str(row["id"])
        try:
            keys = tuple(
                KeyRecord(
                    str(k["key"]),
                    self.box.open(str(k["secret"])),
                    float(k["created_at"]),
                    None if k["expires_at"] is None else float(k["expires_at"]),
                )
                for k in key_rows
            )
            if not keys:
                log.error("app %s has no active key in the store: it is not served", app_id)
                return None
            raw = json.loads(row["settings"] or "{}")
            settings = {k: v for k, v in raw.items() if k in SETTINGS_FIELDS}  # a newer field
            newest, *older = keys
            values = {
                **settings,
                "id": app_id,
                "key": newest.key,
                "secret": newest.secret,
                "enabled": bool(row["enabled"]),
                "name": str(row["name"]),
            }
            app = make_app(values, f"app {app_id} in the app store")
        except (SecretKeyMismatch, ConfigError, ValueError, TypeError) as exc:
            log.error(
                "app %s in the app store cannot be read, so it is not served: %s", app_id, exc
            )
            return None
        app = dataclasses.replace(app, previous=tuple((k.key, k.secret) for k in older))
        return AppRecord(app, keys, float(row["created_at"]), float(row["updated_at"]))
