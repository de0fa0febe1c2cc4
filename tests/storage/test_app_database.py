"""The AppDatabase contract (ressonance.apps.database), run against both engines: SQLite in
``tmp_path`` and a private PostgreSQL, with the ``url`` fixture of test_database.py (a fresh
database per test) and a clock the tests move."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ressonance.apps.crypto import SecretBox
from ressonance.apps.database import AppDatabase
from ressonance.apps.validation import SETTINGS_FIELDS
from ressonance.models import App, Webhook
from ressonance.storage.base import Conflict, StorageError
from ressonance.storage.factory import open_database
from tests.storage.test_database import BOUND, NOW, opened, pg, url
from tests.support.server import free_port

__all__ = ["pg", "url"]  # fixtures of test_database.py, used here by name

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]
BOX_KEY = "a-test-secret-key-of-at-least-32-characters"
OTHER_KEY = "another-secret-key-of-at-least-32-characters"
SECRET = "s3cret-never-in-the-table"


class Clock:
    """A clock the test moves; starts at NOW."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def apps_in(url: str, clock: Clock, key: str = BOX_KEY) -> AsyncIterator[AppDatabase]:
    async with opened(url) as db:
        yield AppDatabase(db, SecretBox(key), clock=clock)


def full_app(app_id: str = "2001", key: str = "key-2001", secret: str = SECRET) -> App:
    """An app whose every setting differs from the default."""
    return App(
        id=app_id,
        key=key,
        secret=secret,
        enabled=False,
        name="Orders & co",
        client_events=False,
        max_payload_kb=20,
        max_connections=5,
        max_client_events_per_second=7,
        max_subscriptions_per_second=9,
        max_channels_per_connection=11,
        max_presence_members=13,
        max_presence_member_kb=2,
        subscription_count=True,
        cache_ttl=60,
        allowed_origins=("https://a.example", "https://b.example"),
        webhooks=(
            Webhook(
                "https://hooks.example/pusher",
                ("channel_occupied", "member_added"),
                channel_name_starts_with="presence-",
                channel_name_ends_with="-room",
                headers=(("X-Token", "t1"),),
            ),
            Webhook("http://10.0.0.5:8080/hook", ("client_event",)),
        ),
        webhook_batching=True,
    )


async def raw_keys(store: AppDatabase, app_id: str | None = None) -> list[dict[str, Any]]:
    if app_id is None:
        return await store.db.fetch("SELECT * FROM app_keys ORDER BY created_at")
    return await store.db.fetch(
        "SELECT * FROM app_keys WHERE app_id = ? ORDER BY created_at", app_id
    )


async def test_every_field_survives_create_get_and_load(url: str) -> None:
    app = full_app()
    defaults = App(id="", key="", secret="")
    for name in (*SETTINGS_FIELDS, "enabled", "name"):  # a new setting must be added above
        assert getattr(app, name) != getattr(defaults, name), name
    clock = Clock()
    async with apps_in(url, clock) as store:
        created = await store.create(app)
        assert created.app == app
        got = await store.get(app.id)
        assert got is not None
        assert got.app == app
        assert got.created_at == got.updated_at == NOW
        assert [(k.key, k.secret, k.created_at, k.expires_at) for k in got.keys] == [
            (app.key, SECRET, NOW, None)
        ]
        assert got.to_json() == created.to_json()
        revision, records = await store.load()
        assert revision == await store.revision() == 1
        assert [r.app for r in records] == [app]
    async with apps_in(url, clock) as again:  # a new connection reads the same
        got_again = await again.get(app.id)
        assert got_again is not None and got_again.app == app


async def test_secrets_are_sealed_in_the_table(url: str) -> None:
    async with apps_in(url, Clock()) as store:
        await store.create(full_app())
        [row] = await raw_keys(store)
        assert str(row["secret"]).startswith("fernet:")
        assert SECRET not in str(row["secret"])
        for app_row in await store.db.fetch("SELECT * FROM apps"):
            assert SECRET not in repr(app_row)


async def test_another_secret_key_reads_no_secret_and_logs_none(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    async with apps_in(url, clock) as store:
        await store.create(full_app("2001", "key-a"))
        await store.create(full_app("2002", "key-b", secret="other-s3cret"))
    caplog.set_level(logging.DEBUG)
    async with apps_in(url, clock, key=OTHER_KEY) as stranger:
        revision, records = await stranger.load()
        assert (revision, records) == (2, [])
        assert await stranger.get("2001") is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert {"2001", "2002"} <= {str(a) for r in errors for a in (r.args or ())}
    assert SECRET not in caplog.text and "other-s3cret" not in caplog.text
    async with apps_in(url, clock) as owner:  # the right key still reads both
        assert [r.app.id for r in (await owner.load())[1]] == ["2001", "2002"]


async def test_a_duplicate_id_or_key_is_a_conflict_and_leaves_nothing(url: str) -> None:
    async with apps_in(url, Clock()) as store:
        await store.create(full_app("2001", "key-a"))
        with pytest.raises(Conflict):
            await store.create(full_app("2001", "key-new"))
        with pytest.raises(Conflict):  # a key is unique across apps
            await store.create(full_app("2002", "key-a"))
        assert await store.get("2002") is None  # its app row was rolled back too
        assert await store.revision() == 1
        assert [row["key"] for row in await raw_keys(store)] == ["key-a"]
        # a rotated-out key in its grace period is still taken
        await store.rotate("2001", "key-b", "secret-b", grace=60)
        with pytest.raises(Conflict):
            await store.create(full_app("2003", "key-a"))


async def test_update_changes_name_enabled_and_settings_not_keys(url: str) -> None:
    clock = Clock()
    async with apps_in(url, clock) as store:
        await store.create(App(id="2001", key="key-a", secret=SECRET, name="before"))
        before = await store.revision()
        clock.now += 5
        changed = full_app("2001", "ignored-key", "ignored-secret")
        record = await store.update(changed)
        assert record is not None
        assert await store.revision() == before + 1
        assert record.app.name == "Orders & co" and record.app.enabled is False
        for name in SETTINGS_FIELDS:
            assert getattr(record.app, name) == getattr(changed, name), name
        assert (record.app.key, record.app.secret) == ("key-a", SECRET)
        assert (record.created_at, record.updated_at) == (NOW, NOW + 5)
        # back to the defaults: the settings JSON forgets them
        reset = await store.update(App(id="2001", key="key-a", secret=SECRET, name="after"))
        assert reset is not None
        assert reset.app == App(id="2001", key="key-a", secret=SECRET, name="after")
        assert await store.db.fetch("SELECT settings FROM apps") == [{"settings": "{}"}]
        revision = await store.revision()
        assert await store.update(App(id="nope", key="k", secret="s")) is None
        assert await store.revision() == revision


async def test_every_write_bumps_the_revision_and_nothing_else_does(url: str) -> None:
    clock = Clock()
    async with apps_in(url, clock) as store:
        assert await store.revision() == 0
        seen = [0]

        async def moved() -> None:
            now = await store.revision()
            assert now == seen[-1] + 1
            seen.append(now)

        await store.create(full_app())
        await moved()
        await store.update(App(id="2001", key="x", secret="y", name="n"))
        await moved()
        clock.now += 1
        await store.rotate("2001", "key-b", "secret-b", grace=10)
        await moved()
        clock.now += 20
        assert await store.purge_expired() == 1
        await moved()
        assert await store.delete("2001")
        await moved()
        # what changes nothing moves nothing
        await store.load()
        await store.get("2001")
        assert await store.purge_expired() == 0
        assert not await store.delete("2001")
        assert await store.rotate("2001", "k", "s", grace=0) is None
        assert await store.revision() == seen[-1]


async def test_rotate_keeps_at_most_two_pairs_newest_first(url: str) -> None:
    clock = Clock()
    async with apps_in(url, clock) as store:
        await store.create(App(id="2001", key="key-1", secret="secret-1"))
        clock.now += 1
        record = await store.rotate("2001", "key-2", "secret-2", grace=100)
        assert record is not None
        assert [(k.key, k.secret, k.expires_at) for k in record.keys] == [
            ("key-2", "secret-2", None),
            ("key-1", "secret-1", NOW + 1 + 100),
        ]
        assert (record.app.key, record.app.secret) == ("key-2", "secret-2")
        assert record.app.previous == (("key-1", "secret-1"),)
        assert record.app.secret_for("key-1") == "secret-1"
        assert record.app.keys == ("key-2", "key-1")
        assert record.updated_at == NOW + 1
        loaded = (await store.load())[1][0]
        assert loaded == record
        clock.now += 1
        record = await store.rotate("2001", "key-3", "secret-3", grace=100)
        assert record is not None
        assert [(k.key, k.expires_at) for k in record.keys] == [
            ("key-3", None),
            ("key-2", NOW + 2 + 100),
        ]
        assert [row["key"] for row in await raw_keys(store)] == ["key-2", "key-3"]  # key-1 gone
        clock.now += 1
        record = await store.rotate("2001", "key-4", "secret-4", grace=0)
        assert record is not None
        assert [(k.key, k.expires_at) for k in record.keys] == [("key-4", None)]
        assert record.app.previous == ()
        assert [row["key"] for row in await raw_keys(store)] == ["key-4"]
        assert await store.rotate("nope", "key-5", "secret-5", grace=10) is None
        assert [row["key"] for row in await raw_keys(store)] == ["key-4"]


async def two_apps_one_rotated(store: AppDatabase, clock: Clock, grace: float) -> None:
    """App 2001 (key-1, then key-2 a second later with ``grace``) and app 2002 (other)."""
    await store.create(App(id="2001", key="key-1", secret="secret-1"))
    await store.create(App(id="2002", key="other", secret="other-secret"))
    clock.now += 1
    await store.rotate("2001", "key-2", "secret-2", grace=grace)


async def test_expired_keys_are_not_loaded_and_purge_deletes_them(url: str) -> None:
    clock = Clock()
    async with apps_in(url, clock) as store:
        await two_apps_one_rotated(store, clock, grace=60)
        clock.now += 59.5  # still in its grace period
        got = await store.get("2001")
        assert got is not None and got.app.keys == ("key-2", "key-1")
        assert await store.purge_expired() == 0
        clock.now += 0.5  # the grace period ends now
        got = await store.get("2001")
        assert got is not None and [k.key for k in got.keys] == ["key-2"]
        assert got.app.previous == ()
        loaded = {r.app.id: r.app.keys for r in (await store.load())[1]}
        assert loaded == {"2001": ("key-2",), "2002": ("other",)}
        assert len(await raw_keys(store, "2001")) == 2  # read past, still in the table
        revision = await store.revision()
        assert await store.purge_expired() == 1
        assert await store.revision() == revision + 1
        assert sorted(row["key"] for row in await raw_keys(store)) == ["key-2", "other"]


async def test_delete_removes_the_app_and_its_keys(url: str) -> None:
    clock = Clock()
    async with apps_in(url, clock) as store:
        await two_apps_one_rotated(store, clock, grace=3600)
        assert await store.delete("2001") is True
        assert await store.get("2001") is None
        assert await raw_keys(store, "2001") == []
        assert [r.app.id for r in (await store.load())[1]] == ["2002"]
        # its keys are free again
        await store.create(App(id="2003", key="key-1", secret="new-secret"))
        await store.create(App(id="2004", key="key-2", secret="new-secret"))


async def test_a_stored_setting_the_rules_refuse_leaves_the_app_out(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with apps_in(url, Clock()) as store:
        await store.create(App(id="2001", key="key-1", secret="secret-1"))
        await store.create(App(id="2002", key="key-2", secret="secret-2"))
        await store.db.execute(
            "UPDATE apps SET settings = ? WHERE id = ?", '{"max_connections": -1}', "2001"
        )
        await store.db.execute(  # a field of a newer version is ignored, not fatal
            "UPDATE apps SET settings = ? WHERE id = ?",
            '{"max_connections": 3, "a_future_field": true}',
            "2002",
        )
        caplog.set_level(logging.ERROR)
        records = (await store.load())[1]
        assert [(r.app.id, r.app.max_connections) for r in records] == [("2002", 3)]
        assert "2001" in caplog.text and "secret-1" not in caplog.text


async def test_two_objects_on_one_store_see_each_others_writes(url: str) -> None:
    clock = Clock()
    async with apps_in(url, clock) as first, apps_in(url, clock) as second:
        async with asyncio.timeout(BOUND):
            start = await second.revision()
            await first.create(App(id="2001", key="key-1", secret="secret-1", name="one"))
            assert await second.revision() > start
            got = await second.get("2001")
            assert got is not None and got.app.secret == "secret-1"
            moved = await first.revision()
            await second.update(App(id="2001", key="key-1", secret="secret-1", name="two"))
            assert await first.revision() > moved
            revision, records = await first.load()
            assert revision == await second.revision()
            assert [r.app.name for r in records] == ["two"]
            await second.delete("2001")
            assert (await first.load())[1] == []


@pytest.mark.parametrize("where", ["sqlite below a file", "postgres on a closed port"])
async def test_a_store_that_cannot_be_opened_is_a_storage_error(tmp_path: Path, where: str) -> None:
    """The storage port's promise (storage/base.py): a caller catches only StorageError, so
    that ``ressonance serve`` names the store in a configuration error, not a traceback."""
    (tmp_path / "file").write_text("not a directory")
    target = {
        "sqlite below a file": f"sqlite:///{tmp_path}/file/apps.db",
        "postgres on a closed port": f"postgresql://ressonance@127.0.0.1:{free_port()}/none",
    }[where]
    db = open_database(target)
    try:
        with pytest.raises(StorageError):
            async with asyncio.timeout(BOUND):
                await db.start()
    finally:
        await db.close()


async def test_the_rotated_pair_is_the_newest_even_when_the_clock_went_back(url: str) -> None:
    """Nodes of a cluster write with their own clocks, and a clock can step back (NTP): the
    pair a rotation adds is the app's key, whatever the times say."""
    clock = Clock()
    async with apps_in(url, clock) as store:
        await store.create(App(id="2001", key="key-b", secret="secret-b"))
        clock.now -= 2  # the rotating node's clock is 2 s behind the creating node's
        record = await store.rotate("2001", "key-a", "secret-a", grace=60)
        assert record is not None
        assert (record.app.key, record.app.secret) == ("key-a", "secret-a")
        assert [k.expires_at is None for k in record.keys] == [True, False]
        loaded = (await store.load())[1][0]
        assert loaded.app.key == "key-a" and loaded.app.oldest == ("key-b", "secret-b")
