"""The embedded engine: one ``sqlite3`` connection (standard library), owned by one worker
thread, so the event loop never waits on the disk.

Calls reach the thread through ``run_in_executor``; an asyncio lock serialises them and holds
for a whole transaction. Every transaction begins ``IMMEDIATE`` (it takes the write lock at
once, so two processes never deadlock upgrading a read lock), and a busy database is waited
for up to ``timeout`` seconds before :class:`~ressonance.storage.base.Unavailable`. The journal
is WAL (readers do not block the writer, https://www.sqlite.org/wal.html) and foreign keys are
enforced. A new file is created 0600 in a directory created 0700: it holds app secrets; SQLite
gives its -wal and -shm files the database file's permissions.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from ressonance.storage.base import Conflict, Dialect, Executor, Row, StorageError, Unavailable
from ressonance.storage.migrations import migrate

T = TypeVar("T")
MEMORY = ":memory:"
# result codes of a database that cannot be used now (https://www.sqlite.org/rescode.html)
_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL")
_CONFLICT = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def _translate(error: sqlite3.Error) -> StorageError:
    name = getattr(error, "sqlite_errorname", "") or ""
    if name in _CONFLICT:
        return Conflict(f"sqlite: {error}")
    if name.startswith(_UNAVAILABLE) or name == "SQLITE_READONLY":
        return Unavailable(f"sqlite: {error}")
    return StorageError(f"sqlite: {error}")


def _create_private(path: Path) -> None:
    """The directory (0700) and the empty file (0600), when missing."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # another node may race
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


class _Connection(Executor):
    """Runs statements on the worker thread; the caller holds the lock."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, *params: Any) -> int:
        def run(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(sql, params)
            return max(cursor.rowcount, 0)

        return await self._db._call(run)

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        def run(connection: sqlite3.Connection) -> None:
            if connection.in_transaction:  # inside Database.transaction
                connection.executemany(sql, rows)
                return
            connection.execute("BEGIN IMMEDIATE")  # one commit for all the rows
            try:
                connection.executemany(sql, rows)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

        await self._db._call(run)

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        def run(connection: sqlite3.Connection) -> list[Row]:
            cursor = connection.execute(sql, params)
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return await self._db._call(run)


class SqliteDatabase:
    """A SQLite file (or ``:memory:``, private to this object) as a
    :class:`~ressonance.storage.base.Database`."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._healthy = False
        self._session = _Connection(self)

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        if self._connection is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ressonance-sqlite")

        def connect() -> sqlite3.Connection:
            if self.path != MEMORY:
                _create_private(Path(self.path))
            # isolation_level=None: no implicit transactions, ours are explicit
            connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                _set_wal(connection, self.timeout)
                connection.execute("PRAGMA foreign_keys=ON")
            except BaseException:
                connection.close()
                raise
            return connection

        try:
            self._connection = await self._run(connect)
        except sqlite3.Error as error:
            await self.close()
            raise _translate(error) from None
        except OSError as error:  # the directory or the file cannot be made
            await self.close()
            reason = error.strerror or error
            raise Unavailable(f"sqlite: cannot open {self.path}: {reason}") from None
        self._healthy = True
        try:
            await migrate(self)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        connection, executor = self._connection, self._executor
        self._connection = self._executor = None
        self._healthy = False
        if executor is None:
            return
        if connection is not None:
            await asyncio.get_running_loop().run_in_executor(executor, connection.close)
        executor.shutdown(wait=False)

    async def execute(self, sql: str, *params: Any) -> int:
        async with self._lock:
            return await self._session.execute(sql, *params)

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        async with self._lock:
            return await self._session.fetch(sql, *params)

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        async with self._lock:
            await self._session.execute_many(sql, rows)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            await self._session.execute("BEGIN IMMEDIATE")
            try:
                yield self._session
            except BaseException:
                with suppress(StorageError):  # the transaction may be gone already
                    await self._session.execute("ROLLBACK")
                raise
            await self._session.execute("COMMIT")

    async def _run(self, function: Callable[[], T]) -> T:
        if self._executor is None:
            raise Unavailable("sqlite: the database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def _call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection
        if connection is None:
            self._healthy = False
            raise Unavailable("sqlite: the database is closed")
        try:
            result = await self._run(lambda: function(connection))
        except sqlite3.Error as error:
            translated = _translate(error)
            self._healthy = not isinstance(translated, Unavailable)
            raise translated from None
        self._healthy = True
        return result


def _set_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """``journal_mode=WAL``, waiting for another process doing the same: switching the journal
    mode can answer "database is locked" at once, without the busy timeout (two nodes starting
    together on a new file), so it is retried here until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
