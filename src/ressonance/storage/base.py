"""The storage port: a small async SQL database, one API for SQLite and PostgreSQL.

SQL is written once with ``?`` placeholders (the ``qmark`` style of PEP 249 and of the
standard ``sqlite3`` module); the PostgreSQL engine translates them to ``$1 .. $n``
(https://magicstack.github.io/asyncpg/current/usage.html). A ``?`` inside a quoted string or
identifier is left alone; PostgreSQL's jsonb ``?`` operators cannot be written (use
``jsonb_exists``). Other differences (column types) stay in the migrations, per engine.

Errors are translated at this boundary, so a caller catches only these (docs/design.md,
"Layers"; ``ressonance.errors``)::

    RessonanceError
     └── StorageError       any other database error (bad SQL, a constraint)
          ├── Conflict      a unique or primary key is taken
          └── Unavailable   the database cannot be reached (refused, lost, locked too long);
                            ``healthy`` is then False until an operation reaches it again

``Unavailable`` here is the storage's own, not the HTTP ``Unavailable`` of ``ressonance.http``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

from ressonance.errors import RessonanceError

Dialect = Literal["sqlite", "postgres"]
Row = dict[str, Any]


class StorageError(RessonanceError):
    """A database operation failed; the message says why (never a password)."""


class Conflict(StorageError):
    """A unique or primary key constraint refused the write."""


class Unavailable(StorageError):
    """The database cannot be reached now; the operation may succeed later."""


class Executor(Protocol):
    """Runs statements: the database itself, or one transaction."""

    async def execute(self, sql: str, *params: Any) -> int:
        """Run ``sql`` with ``?`` placeholders; the number of rows it changed (0 for DDL)."""
        ...

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        """Run a query; its rows as dicts keyed by column name."""
        ...

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run ``sql`` once per parameter tuple of ``rows``, in one round trip and one
        transaction (SQLite: one call on the worker thread, in a transaction of its own unless
        one is open; PostgreSQL: asyncpg's ``executemany``, which is atomic)."""
        ...


class Database(Executor, Protocol):
    """An open database. ``start`` connects and applies the migrations
    (:mod:`ressonance.storage.migrations`); ``close`` releases every connection.

    ``transaction()`` yields an :class:`Executor` bound to one connection: it commits when the
    block ends and rolls back when it raises. Inside it, use that executor, not the database
    (on SQLite the database waits for the transaction to end).
    """

    dialect: Dialect

    @property
    def healthy(self) -> bool:
        """Whether the last operation reached the database."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Executor]: ...
