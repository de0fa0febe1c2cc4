"""AppCache (ressonance.apps.cache) over a real SQLite AppDatabase: look-ups by every active
key and by id, re-reads only when the revision moved, on_change, key expiry on the node's own
clock, a store that fails and comes back, and stored apps that clash with configured ones."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from ressonance.apps.cache import PURGE_INTERVAL, AppCache
from ressonance.apps.crypto import SecretBox
from ressonance.apps.database import AppDatabase
from ressonance.apps.records import AppRecord
from ressonance.models import App
from ressonance.storage.base import StorageError
from ressonance.storage.sqlite import SqliteDatabase

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]
NOW = 1_700_000_000.0
BOX_KEY = "a-test-secret-key-of-at-least-32-characters"
BOUND = 5.0  # seconds, the bound on any wait


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[AppDatabase]:
    db = SqliteDatabase(tmp_path / "apps.db")
    await db.start()
    try:
        yield AppDatabase(db, SecretBox(BOX_KEY), clock=clock)
    finally:
        await db.close()


def cache_of(
    store: AppDatabase, clock: Clock, fixed: tuple[App, ...] = (), interval: float = 1.0
) -> tuple[AppCache, list[tuple[str, App | None]]]:
    """A cache over ``store`` and the changes its on_change saw."""
    cache = AppCache(
        [AppRecord.fixed(app, "config") for app in fixed], store, interval=interval, clock=clock
    )
    changes: list[tuple[str, App | None]] = []
    cache.on_change = lambda app_id, app: changes.append((app_id, app))
    return cache, changes


async def started(
    store: AppDatabase, clock: Clock, *apps: App
) -> tuple[AppCache, list[tuple[str, App | None]]]:
    """``apps`` stored, then a cache over the store started."""
    for app in apps:
        await store.create(app)
    cache, changes = cache_of(store, clock)
    await cache.start()
    return cache, changes


APP_1 = App(id="2001", key="key-1", secret="secret-1")


async def eventually(check: Callable[[], Awaitable[object]]) -> None:
    """Wait (bounded) until ``check`` answers true."""
    async with asyncio.timeout(BOUND):
        while not await check():
            await asyncio.sleep(0.01)


async def test_every_active_key_and_the_id_find_the_app(store: AppDatabase, clock: Clock) -> None:
    await store.create(App(id="2001", key="key-1", secret="secret-1"))
    await store.create(App(id="2002", key="other", secret="other-secret"))
    clock.now += 1
    await store.rotate("2001", "key-2", "secret-2", grace=60)
    cache, _ = cache_of(store, clock)
    await cache.start()
    for key, secret in (("key-1", "secret-1"), ("key-2", "secret-2")):
        app = await cache.by_key(key)
        assert app is not None and app.id == "2001"
        assert app.secret_for(key) == secret
    found = await cache.by_id("2001")
    assert found is not None and found.key == "key-2"
    other = await cache.by_key("other")
    assert other is not None and other.id == "2002"
    assert await cache.by_key("nope") is None
    assert await cache.by_id("nope") is None
    assert sorted(app.id for app in await cache.all()) == ["2001", "2002"]
    assert [r.app.id for r in cache.records()] == ["2001", "2002"]


async def test_refresh_reloads_only_when_the_revision_moved(
    store: AppDatabase, clock: Clock
) -> None:
    cache, _ = cache_of(store, clock)
    await cache.start()
    assert cache.reloads == 1
    for _ in range(3):
        assert await cache.refresh() is True
    assert cache.reloads == 1
    other = AppDatabase(store.db, SecretBox(BOX_KEY), clock=clock)  # another node's writes
    await other.create(App(id="2001", key="key-1", secret="secret-1"))
    assert await cache.by_id("2001") is None  # not read yet
    await cache.refresh()
    assert cache.reloads == 2
    assert await cache.by_id("2001") is not None
    await cache.refresh()
    assert cache.reloads == 2
    await cache.refresh(force=True)
    assert cache.reloads == 3


async def test_on_change_gets_each_changed_app_and_none_when_deleted(
    store: AppDatabase, clock: Clock
) -> None:
    cache, changes = await started(store, clock, APP_1)
    assert [(i, a.key if a else None) for i, a in changes] == [("2001", "key-1")]
    changes.clear()
    await store.create(App(id="2002", key="key-2", secret="secret-2"))
    await cache.refresh()
    assert [(i, a.id if a else None) for i, a in changes] == [("2002", "2002")]
    changes.clear()
    await store.update(App(id="2001", key="key-1", secret="secret-1", max_connections=3))
    await cache.refresh()
    assert len(changes) == 1  # 2002 did not change: no call for it
    app_id, app = changes[0]
    assert app_id == "2001" and app is not None and app.max_connections == 3
    changes.clear()
    await store.delete("2001")
    await cache.refresh()
    assert changes == [("2001", None)]
    assert await cache.by_key("key-1") is None and await cache.by_id("2001") is None


async def test_a_failing_on_change_does_not_stop_the_others(
    store: AppDatabase, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    await store.create(App(id="2001", key="key-1", secret="secret-1"))
    await store.create(App(id="2002", key="key-2", secret="secret-2"))
    cache, _ = cache_of(store, clock)
    seen: list[str] = []

    def on_change(app_id: str, app: App | None) -> None:
        seen.append(app_id)
        raise RuntimeError("boom")

    cache.on_change = on_change
    with caplog.at_level(logging.ERROR):
        await cache.start()
    assert sorted(seen) == ["2001", "2002"]
    assert await cache.by_id("2001") is not None and await cache.by_id("2002") is not None


async def test_tick_retires_an_expired_key_without_the_database(
    store: AppDatabase, clock: Clock
) -> None:
    await store.create(App(id="2001", key="key-1", secret="secret-1"))
    clock.now += 1
    await store.rotate("2001", "key-2", "secret-2", grace=10)
    cache, changes = cache_of(store, clock)
    await cache.start()
    changes.clear()
    await store.db.close()
    clock.now += 9
    cache.tick()
    assert await cache.by_key("key-1") is not None and changes == []
    clock.now += 1  # the grace period ends
    cache.tick()
    assert await cache.by_key("key-1") is None
    app = await cache.by_key("key-2")
    assert app is not None and app.previous == () and app.secret_for("key-1") is None
    assert [(i, a.keys if a else None) for i, a in changes] == [("2001", ("key-2",))]


async def test_a_failing_store_keeps_the_apps_known_and_recovers(
    store: AppDatabase, clock: Clock
) -> None:
    cache, _ = await started(store, clock, APP_1)
    assert cache.healthy and cache.problem is None
    await store.db.close()
    assert await cache.refresh() is False
    assert cache.problem is not None and "app store unreachable" in cache.problem
    assert not cache.healthy and cache.failures == 1
    assert await cache.refresh() is False and cache.failures == 2
    app = await cache.by_key("key-1")
    assert app is not None and app.id == "2001"
    assert await cache.by_id("2001") is not None
    with pytest.raises(StorageError, match="closed"):
        await cache.start()  # the first read raises rather than serve nothing
    await store.db.start()
    await store.create(App(id="2002", key="key-2", secret="secret-2"))
    assert await cache.refresh() is True
    assert cache.problem is None and cache.healthy
    assert await cache.by_key("key-2") is not None


async def test_a_store_at_an_unreachable_path_sets_the_problem(
    store: AppDatabase, tmp_path: Path, clock: Clock
) -> None:
    cache, _ = await started(store, clock, APP_1)
    (tmp_path / "file").write_text("not a directory")
    unreachable = SqliteDatabase(tmp_path / "file" / "apps.db")  # never opened: it cannot be
    cache.database = AppDatabase(unreachable, SecretBox(BOX_KEY), clock=clock)
    assert await cache.refresh() is False
    assert cache.problem is not None and "app store unreachable" in cache.problem
    assert await cache.by_key("key-1") is not None
    cache.database = store
    assert await cache.refresh() is True and cache.problem is None


async def test_a_stored_app_clashing_with_a_configured_one_is_not_served(
    store: AppDatabase, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    configured = App(id="1001", key="config-key", secret="config-secret")
    await store.create(App(id="1001", key="stored-key", secret="stored-secret"))
    await store.create(App(id="2002", key="config-key", secret="stored-secret-2"))
    await store.create(App(id="2003", key="key-3", secret="secret-3"))
    clock.now += 1
    await store.rotate("2003", "key-3b", "secret-3b", grace=60)
    await store.create(App(id="2004", key="key-4", secret="secret-4"))
    cache, _ = cache_of(store, clock, fixed=(configured,))
    with caplog.at_level(logging.ERROR):
        await cache.start()
    assert await cache.by_id("1001") == configured
    assert await cache.by_key("config-key") == configured
    assert await cache.by_key("stored-key") is None
    assert await cache.by_id("2002") is None
    assert sorted(a.id for a in await cache.all()) == ["1001", "2003", "2004"]
    record = cache.record("1001")
    assert record is not None and record.source == "config" and record.read_only
    assert "1001" in caplog.text and "2002" in caplog.text
    assert "stored-secret" not in caplog.text


async def test_run_follows_the_store_and_wakes_on_refresh_soon(
    store: AppDatabase, clock: Clock
) -> None:
    cache, _ = cache_of(store, clock, interval=0.05)
    await cache.start()
    task = asyncio.create_task(cache.run())
    try:
        await store.create(App(id="2001", key="key-1", secret="secret-1"))
        await eventually(lambda: cache.by_id("2001"))  # the interval's re-read
        cache.interval = 60.0  # from now on only refresh_soon wakes it (after this wait)
        await asyncio.sleep(0.1)
        await store.create(App(id="2002", key="key-2", secret="secret-2"))
        cache.refresh_soon()
        await eventually(lambda: cache.by_id("2002"))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_purges_expired_keys_from_the_store(store: AppDatabase, clock: Clock) -> None:
    await store.create(App(id="2001", key="key-1", secret="secret-1"))
    clock.now += 1
    await store.rotate("2001", "key-2", "secret-2", grace=10)
    cache, _ = cache_of(store, clock, interval=0.02)
    await cache.start()
    task = asyncio.create_task(cache.run())
    try:
        await asyncio.sleep(0.05)
        clock.now += PURGE_INTERVAL + 1

        async def purged() -> bool:
            return len(await store.db.fetch("SELECT key FROM app_keys")) == 1

        await eventually(purged)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [a.keys for a in await cache.all()] == [("key-2",)]
