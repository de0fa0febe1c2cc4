"""The apps a node serves, in memory: the configured apps (read-only) beside the app store's.

The hot path (a connection's key, an API call's app id) reads two dicts and never waits on the
database. The store is re-read when its revision moves (:mod:`ressonance.apps.database`): every
``interval`` seconds (the safety net, 1 s by default), and at once when another node says it
changed something (:meth:`AppCache.refresh_soon`, from the cluster's ``apps`` message).

When the database cannot be reached, the node keeps the apps it has, :attr:`AppCache.problem`
says why (``/ready`` and the ``ressonance_app_store_up`` metric show it), and the next read that
succeeds catches up. A key's grace period ends here too, on this node's clock, with or without
the database (:meth:`AppCache.tick`).

``on_change(app_id, app)`` is called for every app that changed, with the new app or None when
it is gone; the composition root points it at the node, which closes a disabled or deleted
app's connections and gives the others the new limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from ressonance.apps.database import AppDatabase
from ressonance.apps.records import AppRecord, clash
from ressonance.apps.static import AppIndex
from ressonance.models import App
from ressonance.storage.base import StorageError

log = logging.getLogger("ressonance.apps")

INTERVAL = 1.0  # seconds between two reads of the store's revision
PURGE_INTERVAL = 60.0  # seconds between two deletions of expired keys from the store

OnChange = Callable[[str, App | None], None]


class AppCache(AppIndex):
    """An :class:`~ressonance.apps.base.AppStore` over fixed apps and, optionally, a store."""

    def __init__(
        self,
        fixed: Iterable[AppRecord],
        database: AppDatabase | None = None,
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fixed = {r.app.id: r for r in fixed}
        self.database = database
        self.interval = interval
        self.clock = clock
        self.on_change: OnChange = lambda app_id, app: None
        self.problem: str | None = None  # why the store cannot be read now; None: it can
        self.failures = 0  # reads of the store that failed, since the start
        self.reloads = 0  # full reads of the store, since the start
        super().__init__()  # the lookups, by key and by id, rebuilt on every change
        self._stored: dict[str, AppRecord] = {}
        self._revision = -1
        self._next_expiry: float | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._rebuild()

    # management ---------------------------------------------------------------------------
    def records(self) -> list[AppRecord]:
        """Every app served, the configured ones first."""
        return [*self.fixed.values(), *self._stored.values()]

    def record(self, app_id: str) -> AppRecord | None:
        return self.fixed.get(app_id) or self._stored.get(app_id)

    @property
    def healthy(self) -> bool:
        return self.problem is None

    def sources(self) -> dict[str, int]:
        """Apps served, by source (``store``, ``config``, ``development``)."""
        counts = {"store": len(self._stored)}
        for record in self.fixed.values():
            counts[record.source] = counts.get(record.source, 0) + 1
        return counts

    async def start(self) -> None:
        """The first read: raises the storage error when the store cannot be read."""
        if self.database is not None:
            await self.refresh(force=True, raise_errors=True)

    def refresh_soon(self) -> None:
        """Another node changed the store: read it now rather than at the next interval."""
        self._wake.set()

    async def refresh(self, force: bool = False, raise_errors: bool = False) -> bool:
        """Read the store's revision, and every app when it moved; whether it could be read."""
        if self.database is None:
            return True
        async with self._lock:
            try:
                if force or await self.database.revision() != self._revision:
                    revision, records = await self.database.load()
                    self.reloads += 1
                    self._replace(revision, records)
            except StorageError as exc:
                self.failures += 1
                if self.problem is None:
                    log.warning("app store unreachable, serving the apps known: %s", exc)
                # /ready is open to anyone: the reason, not the database's address (logged)
                self.problem = "app store unreachable: serving the apps last read (see the log)"
                if raise_errors:
                    raise
                return False
            if self.problem is not None:
                log.info("app store reachable again")
                self.problem = None
            return True

    async def run(self) -> None:
        """Until cancelled: :meth:`tick` and :meth:`refresh` every interval or when woken, and
        delete expired keys from the store now and then."""
        next_purge = self.clock() + PURGE_INTERVAL
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            self.tick()
            await self.refresh()
            if self.database is not None and self.clock() >= next_purge and self.healthy:
                next_purge = self.clock() + PURGE_INTERVAL
                try:
                    await self.database.purge_expired()
                except StorageError as exc:
                    log.debug("expired keys not purged: %s", exc)

    def tick(self) -> None:
        """Retire the keys whose grace period ended (no database needed)."""
        now = self.clock()
        if self._next_expiry is None or now < self._next_expiry:
            return
        records = {}
        for app_id, record in self._stored.items():
            current = record.at(now)
            if current is not None:
                records[app_id] = current
        self._apply(records)

    # internals --------------------------------------------------------------------------------
    def _replace(self, revision: int, records: list[AppRecord]) -> None:
        now = self.clock()
        kept: dict[str, AppRecord] = {}
        for record in records:
            current = record.at(now)
            if current is None:
                continue
            taken = clash(self.fixed.values(), current.app.id, current.app.keys)
            if taken is not None:
                log.error(
                    "app %s of the app store is not served: a configured app has its %s",
                    current.app.id,
                    taken,
                )
                continue
            kept[current.app.id] = current
        self._revision = revision
        self._apply(kept)

    def _apply(self, records: dict[str, AppRecord]) -> None:
        before = self._stored
        self._stored = records
        self._rebuild()
        for app_id in before.keys() | records.keys():
            old, new = before.get(app_id), records.get(app_id)
            if old is None or new is None or old.app != new.app:
                try:
                    self.on_change(app_id, new.app if new is not None else None)
                except Exception:
                    log.exception("applying the change of app %s failed", app_id)

    def _rebuild(self) -> None:
        by_key: dict[str, App] = {}
        by_id: dict[str, App] = {}
        expiries = []
        for record in self.records():
            by_id[record.app.id] = record.app
            for key in record.app.keys:
                by_key.setdefault(key, record.app)
            expiry = record.next_expiry()
            if expiry is not None:
                expiries.append(expiry)
        self._by_key, self._by_id = by_key, by_id
        self._next_expiry = min(expiries) if expiries else None
