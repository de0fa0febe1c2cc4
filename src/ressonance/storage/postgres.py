"""The cluster engine: PostgreSQL through a small ``asyncpg`` pool; the only module importing
asyncpg (https://magicstack.github.io/asyncpg/current/).

SQL arrives with ``?`` placeholders and is translated to ``$1 .. $n`` (:func:`placeholders`).
A connection refused, lost or being shut down is
:class:`~ressonance.storage.base.Unavailable` and turns ``healthy`` False; the pool replaces a
closed connection on its next use, so operations work again once the server is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from functools import lru_cache
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from ressonance.storage.base import Conflict, Dialect, Executor, Row, StorageError, Unavailable
from ressonance.storage.migrations import migrate

T = TypeVar("T")

# errors meaning "not reachable now": the connection, or the server shutting down or starting
# (SQLSTATE class 08 and 57P, https://www.postgresql.org/docs/current/errcodes-appendix.html)
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    # the connection is left mid-operation (one cancelled while the server was away)
    asyncpg.exceptions.InternalClientError,
)


@lru_cache(maxsize=512)
def placeholders(sql: str) -> str:
    """``?`` → ``$1 .. $n``, outside single-quoted strings and double-quoted identifiers."""
    out: list[str] = []
    quote = ""
    count = 0
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            count += 1
            out.append(f"${count}")
            continue
        out.append(char)
    return "".join(out)


def _translate(error: BaseException) -> StorageError:
    if isinstance(error, asyncpg.UniqueViolationError):
        return Conflict(f"postgres: {error}")
    if isinstance(error, _UNAVAILABLE):
        return Unavailable(f"postgres: {type(error).__name__}: {error}")
    return StorageError(f"postgres: {error}")


class _PoolNoise(logging.Filter):
    """asyncpg's pool logs a warning with a whole traceback each time it fails to reconnect
    (every 1 to 60 s while the database is down); the app cache already logs the outage once
    (:mod:`ressonance.apps.cache`). Its records become one line at debug level, dropped unless
    the log level is debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


logging.getLogger("asyncpg.pool").addFilter(_PoolNoise())


def _rows_changed(status: str) -> int:
    """The count in a command tag ("INSERT 0 1", "UPDATE 3"); 0 for DDL ("CREATE TABLE")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Connection(Executor):
    def __init__(self, db: PostgresDatabase, connection: Any) -> None:
        self._db = db
        self.raw = connection

    async def execute(self, sql: str, *params: Any) -> int:
        status = await self._db._reach(
            self.raw.execute(placeholders(sql), *params, timeout=self._db.timeout)
        )
        return _rows_changed(str(status))

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        rows = await self._db._reach(
            self.raw.fetch(placeholders(sql), *params, timeout=self._db.timeout)
        )
        return [dict(row) for row in rows]

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self._db._reach(
            self.raw.executemany(placeholders(sql), rows, timeout=self._db.timeout)
        )


class PostgresDatabase:
    """A PostgreSQL database (``dsn``: ``postgresql://user:password@host:port/name``) as a
    :class:`~ressonance.storage.base.Database`; ``timeout`` bounds each connect and query."""

    dialect: Dialect = "postgres"

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 4, timeout: float = 5.0
    ) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self.timeout = timeout
        self._pool: Any = None
        self._healthy = False

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        if self._pool is not None:
            return
        self._pool = await self._reach(
            asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self.timeout,
                command_timeout=self.timeout,
            )
        )
        try:
            await migrate(self)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._healthy = False
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except Exception:  # TimeoutError too
                pool.terminate()

    async def execute(self, sql: str, *params: Any) -> int:
        async with self._connection() as connection:
            return await connection.execute(sql, *params)

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        async with self._connection() as connection:
            return await connection.fetch(sql, *params)

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        async with self._connection() as connection:
            await connection.execute_many(sql, rows)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._connection() as connection:
            transaction = connection.raw.transaction()
            await self._reach(transaction.start())
            try:
                yield connection
            except BaseException:
                with suppress(StorageError):  # a lost connection has rolled back already
                    await self._reach(transaction.rollback())
                raise
            await self._reach(transaction.commit())

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Connection]:
        if self._pool is None:
            self._healthy = False
            raise Unavailable("postgres: the database is closed")
        pool = self._pool
        raw = await self._reach(pool.acquire(timeout=self.timeout))
        try:
            yield _Connection(self, raw)
        except Unavailable:  # not given back as it is: the pool opens another
            with suppress(Exception):
                raw.terminate()
            raise
        finally:
            with suppress(Exception):  # the pool replaces a broken connection on its next use
                await pool.release(raw, timeout=self.timeout)

    async def _reach(self, operation: Awaitable[T]) -> T:
        """Await one database operation: asyncpg's errors become storage errors, and
        ``healthy`` says whether it reached the server."""
        try:
            result = await operation
        except (asyncpg.PostgresError, *_UNAVAILABLE) as error:
            translated = _translate(error)
            self._healthy = not isinstance(translated, Unavailable)
            raise translated from None
        self._healthy = True
        return result
