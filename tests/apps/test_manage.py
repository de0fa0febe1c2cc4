"""AppManager (ressonance.apps.manage) over a real SQLite store and a cache with one
configured app, wired as the server wires it: every refused field is a 400 naming it,
configured apps are read-only (403), unknown ids 404, taken ids and keys 409, a store that
cannot be reached 503; generated ids; parse_duration."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ressonance.apps.cache import AppCache
from ressonance.apps.crypto import SecretBox
from ressonance.apps.database import AppDatabase
from ressonance.apps.manage import MAX_GRACE, AppManager, Invalid, parse_duration
from ressonance.apps.records import AppRecord
from ressonance.apps.validation import NOT_NEGATIVE
from ressonance.errors import HttpError
from ressonance.models import App
from ressonance.storage.sqlite import SqliteDatabase

pytestmark = pytest.mark.timeout(20)
BOX_KEY = "a-test-secret-key-of-at-least-32-characters"
CONFIGURED = App(id="1001", key="config-key", secret="config-secret", name="configured")


@dataclass
class Setup:
    manager: AppManager
    cache: AppCache
    database: AppDatabase
    changed: list[str]


@pytest_asyncio.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    db = SqliteDatabase(tmp_path / "apps.db")
    await db.start()
    database = AppDatabase(db, SecretBox(BOX_KEY))
    cache = AppCache([AppRecord.fixed(CONFIGURED, "config")], database)
    await cache.start()
    changed: list[str] = []

    async def on_changed(app_id: str) -> None:  # as the server does: serve the change at once
        changed.append(app_id)
        await cache.refresh(force=True)

    try:
        yield Setup(AppManager(database, cache, changed=on_changed), cache, database, changed)
    finally:
        await db.close()


async def refused(call: Awaitable[Any], status: int, field: str | None = None) -> HttpError:
    with pytest.raises(HttpError) as caught:
        await call
    assert caught.value.status == status, caught.value.message
    if field is not None:
        assert isinstance(caught.value, Invalid)
        assert caught.value.field == field, caught.value.message
    return caught.value


BAD_CREATE: list[tuple[dict[str, Any], str]] = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": 12}, "name"),
    ({"name": None}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "a", "id": "has space"}, "id"),
    ({"name": "a", "id": ""}, "id"),
    ({"name": "a", "id": "x" * 65}, "id"),
    ({"name": "a", "id": "é1"}, "id"),
    ({"name": "a", "id": "a/b"}, "id"),
    ({"name": "a", "id": True}, "id"),
    ({"name": "a", "id": ["1"]}, "id"),
    ({"name": "a", "key": "a/b"}, "key"),
    ({"name": "a", "key": "k" * 129}, "key"),
    ({"name": "a", "key": "k\n"}, "key"),
    ({"name": "a", "secret": "has space"}, "secret"),
    ({"name": "a", "secret": "s" * 257}, "secret"),
    ({"name": "a", "secret": "sécret"}, "secret"),
    ({"name": "a", "secret": 1.5}, "secret"),
    ({"name": "a", "unknown": 1}, "unknown"),
    ({"name": "a", "previous": []}, "previous"),
    ({"name": "a", "max_connections": "many"}, "max_connections"),
    ({"name": "a", "max_connections": 1.5}, "max_connections"),
    ({"name": "a", "enabled": "perhaps"}, "enabled"),
    ({"name": "a", "client_events": 3}, "client_events"),
    ({"name": "a", "allowed_origins": 5}, "allowed_origins"),
    *(({"name": "a", field: -1}, field) for field in NOT_NEGATIVE),
]


@pytest.mark.parametrize(("body", "field"), BAD_CREATE)
@pytest.mark.asyncio
async def test_create_refuses_each_bad_field_by_name(
    setup: Setup, body: dict[str, Any], field: str
) -> None:
    before = await setup.database.revision()
    await refused(setup.manager.create(body), 400, field)
    assert await setup.database.revision() == before  # nothing written
    assert setup.changed == []


BAD_UPDATE: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"name": 5}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"id": "2"}, "id"),
    ({"unknown": 1}, "unknown"),
    ({"max_payload_kb": "big"}, "max_payload_kb"),
    *(({field: -1}, field) for field in NOT_NEGATIVE),
]


@pytest.mark.parametrize(("body", "field"), BAD_UPDATE)
@pytest.mark.asyncio
async def test_update_refuses_each_bad_field_by_name(
    setup: Setup, body: dict[str, Any], field: str
) -> None:
    record = await setup.manager.create({"name": "app"})
    before = await setup.database.revision()
    await refused(setup.manager.update(record.app.id, body), 400, field)
    assert await setup.database.revision() == before


@pytest.mark.parametrize("field", ["key", "secret"])
@pytest.mark.asyncio
async def test_credentials_change_only_by_rotation(setup: Setup, field: str) -> None:
    record = await setup.manager.create({"name": "app"})
    error = await refused(setup.manager.update(record.app.id, {field: "new-value"}), 400, field)
    assert "rotate-secret" in error.message


@pytest.mark.asyncio
async def test_a_body_that_is_not_an_object_is_refused(setup: Setup) -> None:
    await refused(setup.manager.create(["name"]), 400, "body")  # type: ignore[arg-type]
    record = await setup.manager.create({"name": "app"})
    await refused(setup.manager.update(record.app.id, "x"), 400, "body")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_create_update_rotate_delete_through_the_cache(setup: Setup) -> None:
    manager = setup.manager
    record = await manager.create(
        {"name": "  Orders  ", "id": "orders.1", "key": "orders-key", "max_connections": "7"}
    )
    assert (record.app.id, record.app.name, record.app.key) == ("orders.1", "Orders", "orders-key")
    assert record.app.max_connections == 7 and record.source == "store"
    assert re.fullmatch(r"[0-9a-f]{32}", record.app.secret)
    assert setup.changed == ["orders.1"]
    assert (await manager.get("orders.1")).app == record.app  # served at once
    assert await setup.cache.by_key("orders-key") == record.app
    updated = await manager.update("orders.1", {"enabled": False, "allowed_origins": "A.example/"})
    assert updated.app.enabled is False and updated.app.allowed_origins == ("a.example",)
    assert updated.app.max_connections == 7 and updated.app.name == "Orders"  # untouched
    enabled = await manager.set_enabled("orders.1", True)
    assert enabled.app.enabled is True
    rotated = await manager.rotate("orders.1", "1h")
    assert rotated.app.key != "orders-key" and rotated.app.previous[0][0] == "orders-key"
    assert rotated.keys[1].expires_at == pytest.approx(rotated.keys[0].created_at + 3600)
    assert re.fullmatch(r"[0-9a-f]{20}", rotated.app.key)
    await manager.delete("orders.1")
    assert setup.changed == ["orders.1"] * 5
    await refused(manager.get("orders.1"), 404)
    assert await setup.cache.by_key(rotated.app.key) is None


@pytest.mark.asyncio
async def test_generated_ids_are_seven_digits(setup: Setup) -> None:
    ids = set()
    for n in range(5):
        record = await setup.manager.create({"name": f"app {n}"})
        assert re.fullmatch(r"[1-9][0-9]{6}", record.app.id), record.app.id
        ids.add(record.app.id)
    assert len(ids) == 5
    keys = {r.app.key for r in setup.cache.records()}
    assert len(keys) == 6  # 5 generated and the configured one, all different


@pytest.mark.asyncio
async def test_configured_apps_are_read_only(setup: Setup) -> None:
    manager = setup.manager
    record = await manager.get(CONFIGURED.id)
    assert record.read_only and record.source == "config"
    for call in (
        manager.update(CONFIGURED.id, {"name": "changed"}),
        manager.set_enabled(CONFIGURED.id, False),
        manager.rotate(CONFIGURED.id, 0),
        manager.delete(CONFIGURED.id),
    ):
        error = await refused(call, 403)
        assert "read-only" in error.message
    await refused(manager.create({"name": "a", "id": CONFIGURED.id}), 409)
    await refused(manager.create({"name": "a", "key": CONFIGURED.key}), 409)
    assert await setup.database.revision() == 0
    assert await setup.cache.by_id(CONFIGURED.id) == CONFIGURED


@pytest.mark.asyncio
async def test_unknown_ids_are_404_and_taken_ones_409(setup: Setup) -> None:
    manager = setup.manager
    for call in (
        manager.get("nope"),
        manager.update("nope", {"name": "x"}),
        manager.set_enabled("nope", True),
        manager.rotate("nope", "1h"),
        manager.delete("nope"),
    ):
        await refused(call, 404)
    await manager.create({"name": "a", "id": "2001", "key": "key-a"})
    await refused(manager.create({"name": "b", "id": "2001"}), 409)
    await refused(manager.create({"name": "b", "key": "key-a"}), 409)
    await refused(manager.rotate("2001", "31d"), 400, "grace")
    await refused(manager.rotate("2001", "soon"), 400, "grace")


@pytest.mark.asyncio
async def test_a_store_that_cannot_be_reached_is_503(setup: Setup) -> None:
    record = await setup.manager.create({"name": "a"})
    await setup.database.db.close()
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: setup.manager.create({"name": "b"}),
        lambda: setup.manager.update(record.app.id, {"name": "c"}),
        lambda: setup.manager.rotate(record.app.id, 0),
        lambda: setup.manager.delete(record.app.id),
    ]
    for call in calls:
        error = await refused(call(), 503)
        assert "Traceback" not in error.message
    # reads are answered from the cache meanwhile
    assert (await setup.manager.get(record.app.id)).app == record.app
    assert len(await setup.manager.records()) == 2


@pytest.mark.asyncio
async def test_without_a_store_nothing_can_be_written() -> None:
    manager = AppManager(None, fixed=(AppRecord.fixed(CONFIGURED, "config"),))
    assert (await manager.get(CONFIGURED.id)).app == CONFIGURED
    await refused(manager.create({"name": "a"}), 403)
    await refused(manager.update(CONFIGURED.id, {"name": "b"}), 403)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("1.5h", 5400.0),
        (" 2H ", 7200.0),
        ("3600", 3600.0),
        (3600, 3600.0),
        (0, 0.0),
        ("0", 0.0),
        (12.5, 12.5),
        ("30d", MAX_GRACE),
        (MAX_GRACE, MAX_GRACE),
    ],
)
def test_parse_duration_reads(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["", "h", "24x", "1w", "-5", "-1h", "1e3", "24 hours", "1h30m", None, True, False, [], {}, -1],
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(Invalid) as caught:
        parse_duration(value, field="grace")
    assert caught.value.field == "grace" and caught.value.status == 400


@pytest.mark.parametrize("value", ["31d", "721h", MAX_GRACE + 1, 10**12, "99999999999d"])
def test_parse_duration_refuses_more_than_30_days(value: object) -> None:
    with pytest.raises(Invalid, match="30 days"):
        parse_duration(value)
