"""The Database contract (ressonance.storage.base), run against both engines: SQLite in
``tmp_path`` and a private PostgreSQL (tests/support/services.py), a fresh database per test."""

from __future__ import annotations

import asyncio
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio

from ressonance.errors import ConfigError, RessonanceError
from ressonance.storage.base import Conflict, Database, Executor, Unavailable
from ressonance.storage.factory import open_database
from ressonance.storage.migrations import MIGRATIONS, migrate
from ressonance.storage.postgres import placeholders
from ressonance.storage.sqlite import SqliteDatabase
from tests.support.services import PostgresService, postgres_server

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]
BOUND = 10.0  # seconds, the bound on any one step
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresService]:
    with postgres_server(tmp_path_factory.mktemp("postgres")) as service:
        yield service


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store/ressonance.db"
    service: PostgresService = request.getfixturevalue("pg")
    name = f"t_{uuid.uuid4().hex[:16]}"
    async with opened(service.url) as admin:
        await admin.execute(f"CREATE DATABASE {name}")
    return f"{service.url.rsplit('/', 1)[0]}/{name}"


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Database]:
    db = open_database(url)
    async with asyncio.timeout(BOUND):
        await db.start()
    try:
        yield db
    finally:
        async with asyncio.timeout(BOUND):
            await db.close()


async def add_app(db: Executor, app_id: str, name: str = "") -> int:
    return await db.execute(
        "INSERT INTO apps (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
        app_id,
        name,
        NOW,
        NOW,
    )


async def test_start_applies_the_migrations(url: str) -> None:
    async with opened(url) as db:
        assert db.healthy
        rows = await db.fetch("SELECT version, name FROM schema_migrations")
        assert rows == [{"version": m.version, "name": m.name} for m in MIGRATIONS]
        for table in ("apps", "app_keys"):
            assert await db.fetch(f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]
        await add_app(db, "1001")
        app = (await db.fetch("SELECT * FROM apps"))[0]
        assert bool(app["enabled"]) is True
        assert app["settings"] == "{}"


async def test_a_second_start_applies_nothing(url: str) -> None:
    async with opened(url) as db:
        await add_app(db, "1001")
        await db.start()  # started already: nothing happens
    async with opened(url) as again:
        assert await migrate(again) == []
        count = [{"n": len(MIGRATIONS)}]
        assert await again.fetch("SELECT count(*) AS n FROM schema_migrations") == count
        assert await again.fetch("SELECT id FROM apps") == [{"id": "1001"}]


async def test_two_nodes_starting_together_migrate_once(url: str) -> None:
    first, second = open_database(url), open_database(url)
    try:
        async with asyncio.timeout(BOUND):
            await asyncio.gather(first.start(), second.start())
        for db in (first, second):
            versions = await db.fetch("SELECT version FROM schema_migrations ORDER BY version")
            assert versions == [{"version": m.version} for m in MIGRATIONS]
    finally:
        await first.close()
        await second.close()


async def test_execute_and_fetch_with_placeholders(url: str) -> None:
    async with opened(url) as db:
        assert await add_app(db, "1001", "orders?") == 1
        assert await add_app(db, "1002", "chat") == 1
        changed = await db.execute(
            "UPDATE apps SET settings = ?, updated_at = ? WHERE id <> ?", '{"max": 5}', NOW + 1, ""
        )
        assert changed == 2
        rows = await db.fetch(
            "SELECT id, name, settings, updated_at FROM apps"
            " WHERE name = ? AND id <> 'what?' ORDER BY id",
            "orders?",
        )
        assert rows == [
            {"id": "1001", "name": "orders?", "settings": '{"max": 5}', "updated_at": NOW + 1}
        ]
        await db.execute(
            "INSERT INTO app_keys (key, app_id, secret, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            "key-1",
            "1001",
            "secret-1",
            NOW,
            None,
        )
        keys = await db.fetch(
            "SELECT app_id, secret, expires_at FROM app_keys WHERE key = ?", "key-1"
        )
        assert keys == [{"app_id": "1001", "secret": "secret-1", "expires_at": None}]
        assert await db.execute("DELETE FROM apps WHERE id = ?", "1001") == 1
        assert await db.fetch("SELECT key FROM app_keys") == []  # deleted with its app


async def test_a_transaction_commits_or_rolls_back(url: str) -> None:
    async with opened(url) as db:
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await add_app(tx, "1001")
                assert await tx.fetch("SELECT id FROM apps") == [{"id": "1001"}]
                raise RuntimeError("abandon")
        assert await db.fetch("SELECT id FROM apps") == []
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO apps (id, created_at, updated_at) VALUES (?, ?, ?)", "2", NOW, NOW
            )
        assert await db.fetch("SELECT id FROM apps") == [{"id": "2"}]


async def test_a_taken_key_is_a_conflict(url: str) -> None:
    async with opened(url) as db:
        await add_app(db, "1001")
        with pytest.raises(Conflict) as taken:
            await add_app(db, "1001")
        assert isinstance(taken.value, RessonanceError)
        insert_key = "INSERT INTO app_keys (key, app_id, secret, created_at) VALUES (?, ?, ?, ?)"
        await db.execute(insert_key, "key-1", "1001", "s", NOW)
        with pytest.raises(Conflict):
            async with db.transaction() as tx:
                await tx.execute(insert_key, "key-1", "1001", "other", NOW)
        assert db.healthy
        assert await db.fetch("SELECT secret FROM app_keys") == [{"secret": "s"}]


async def test_postgres_stopped_is_unavailable_then_back(pg: PostgresService) -> None:
    async with opened(pg.url) as db:
        await db.fetch("SELECT 1 AS one")
        await asyncio.to_thread(pg.stop)
        try:
            for _ in range(2):  # a pooled connection lost, then a connect refused
                with pytest.raises(Unavailable):
                    await db.fetch("SELECT 1 AS one")
                assert not db.healthy
            with pytest.raises(Unavailable):
                async with db.transaction() as tx:
                    await tx.execute("SELECT 1")
        finally:
            await asyncio.to_thread(pg.start)
        assert await db.fetch("SELECT 1 AS one") == [{"one": 1}]
        assert db.healthy


async def test_the_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "ressonance.db"
    async with opened(f"sqlite:///{path}"):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_sqlite_in_memory(tmp_path: Path) -> None:
    async with opened("sqlite:///:memory:") as db:
        assert isinstance(db, SqliteDatabase)
        assert await add_app(db, "1") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad", ["", "mysql://u@h/db", "sqlite://relative.db", "sqlite:///", "postgresql:///db"]
)
async def test_unsupported_urls_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="storage URL"):
        open_database(bad)


async def test_placeholders_become_numbered_outside_quotes() -> None:
    sql = "SELECT ? FROM t WHERE a = '?''?' AND \"b?\" = ? OR c = ?"
    assert placeholders(sql) == "SELECT $1 FROM t WHERE a = '?''?' AND \"b?\" = $2 OR c = $3"


async def test_execute_many_runs_once_per_row_and_is_one_transaction(
    url: str,
) -> None:
    insert = "INSERT INTO apps (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)"
    async with opened(url) as db:
        await db.execute_many(insert, [("m1", "a?", NOW, NOW), ("m2", "b", NOW, NOW)])
        async with db.transaction() as tx:
            await tx.execute_many(insert, [("m3", "c", NOW, NOW)])
        with pytest.raises(Conflict):
            async with db.transaction() as tx:
                await tx.execute_many(insert, [("m4", "d", NOW, NOW), ("m1", "dup", NOW, NOW)])
        with pytest.raises(Conflict):  # alone, it is one transaction too: all rows or none
            await db.execute_many(insert, [("m5", "e", NOW, NOW), ("m2", "dup", NOW, NOW)])
        rows = await db.fetch("SELECT id, name FROM apps ORDER BY id")
        assert rows == [
            {"id": "m1", "name": "a?"},
            {"id": "m2", "name": "b"},
            {"id": "m3", "name": "c"},
        ]
        await db.execute_many(insert, [("m6", "f", NOW, NOW)])  # the connection is usable
        assert len(await db.fetch("SELECT id FROM apps")) == 4
