"""``ressonance apps ...`` as a user runs it (a subprocess): on a SQLite store in a temporary data
directory, on a private PostgreSQL, and through a running node's management API (then a client
connects with the new key); the exit statuses and messages of bad input and failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ressonance.apps.validation import SETTINGS_FIELDS
from ressonance.apps_cli import OPTION_FIELDS, SETTING_HELP
from tests.support.receiver import Receiver
from tests.support.server import RunningServer, free_port, run_server, write_config
from tests.support.services import postgres_server
from tests.support.wsclient import open_ws

pytestmark = pytest.mark.timeout(60)
TOKEN = "cli-admin-token-0123456789"
CONFIGURED = {"id": "5001", "key": "configured-key", "secret": "configured-secret"}


def ressonance(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m ressonance apps ...`` with only the given ``RESSONANCE_*`` variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RESSONANCE_")}
    return subprocess.run(
        [sys.executable, "-m", "ressonance", "apps", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**clean, **(env or {})},
    )


def ok_json(*args: str, env: dict[str, str] | None = None) -> Any:
    result = ressonance(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_fails(result: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    return {"RESSONANCE_DATA_DIR": str(tmp_path / "data")}


def test_every_setting_has_an_option_and_help() -> None:
    assert set(SETTING_HELP) == set(OPTION_FIELDS) == set(SETTINGS_FIELDS) - {"webhooks"}
    for command in ("create", "update"):
        out = ressonance(command, "--help").stdout
        for name in OPTION_FIELDS:
            assert f"--{name.replace('_', '-')}" in out, (command, name)
        assert "--server" in out and "--app-store" in out and "--json" in out
    out = ressonance("--help").stdout
    for command in ("create", "list", "show", "update", "rotate-secret", "enable", "disable"):
        assert command in out


def test_lifecycle_on_a_sqlite_store(store: dict[str, str], tmp_path: Path) -> None:
    created = ok_json(
        "create",
        "--name",
        "Shop",
        "--max-connections",
        "7",
        "--no-client-events",
        "--allowed-origins",
        "https://a.example, http://b.example:5173",
        env=store,
    )
    app_id = created["id"]
    assert created["name"] == "Shop" and created["source"] == "store"
    assert created["max_connections"] == 7 and created["client_events"] is False
    assert created["allowed_origins"] == ["https://a.example", "http://b.example:5173"]
    assert created["secret"] and created["key"]
    assert (tmp_path / "data" / "ressonance.db").exists()

    listed = ok_json("list", env=store)["apps"]
    assert [a["id"] for a in listed] == [app_id]
    assert ok_json("show", app_id, env=store)["secret"] == created["secret"]

    updated = ok_json(
        "update", app_id, "--name", "Shop 2", "--client-events", "--cache-ttl", "0", env=store
    )
    assert updated["name"] == "Shop 2" and updated["client_events"] is True
    assert updated["cache_ttl"] == 0 and updated["max_connections"] == 7  # the rest unchanged

    rotated = ok_json("rotate-secret", app_id, "--grace", "1h", env=store)
    assert rotated["key"] != created["key"] and rotated["secret"] != created["secret"]
    old = rotated["keys"][1]
    assert old["key"] == created["key"]
    assert 3500 < old["expires_at"] - time.time() <= 3600

    assert ok_json("disable", app_id, env=store)["enabled"] is False
    assert ok_json("show", app_id, env=store)["enabled"] is False
    assert ok_json("enable", app_id, env=store)["enabled"] is True

    assert ok_json("delete", app_id, env=store) == {"id": app_id, "deleted": True}
    assert ok_json("list", env=store) == {"apps": []}
    assert_fails(ressonance("show", app_id, env=store), 1, "not found")


def test_human_output(store: dict[str, str]) -> None:
    result = ressonance("create", "--name", "Blog", "--id", "777", "--secret", "s3cr3t", env=store)
    assert result.returncode == 0, result.stderr
    assert "app secret: s3cr3t" in result.stdout
    assert "PUSHER_APP_ID=777" in result.stdout and "PUSHER_APP_SECRET=s3cr3t" in result.stdout
    record = ok_json("show", "777", env=store)
    assert f"PUSHER_APP_KEY={record['key']}" in result.stdout
    listing = ressonance("list", env=store).stdout
    assert "777" in listing and "Blog" in listing and record["key"] in listing
    shown = ressonance("show", "777", env=store).stdout
    assert "max_connections:" in shown and "s3cr3t" in shown


def test_bad_input_exits_2_naming_the_field(store: dict[str, str]) -> None:
    assert_fails(
        ressonance("create", "--name", "x", "--max-connections", "-1", env=store),
        2,
        "max_connections",
    )
    assert_fails(ressonance("create", "--name", "x", "--id", "a b", env=store), 2, "id")
    assert_fails(ressonance("create", "--max-payload-kb", "9", env=store), 2, "--name")
    assert_fails(
        ressonance("create", "--name", "x", "--cache-ttl", "soon", env=store), 2, "--cache-ttl"
    )
    assert ok_json("list", env=store) == {"apps": []}  # nothing was created
    app_id = ok_json("create", "--name", "x", env=store)["id"]
    assert_fails(ressonance("rotate-secret", app_id, "--grace", "31d", env=store), 2, "grace")
    assert_fails(ressonance("update", app_id, env=store), 2, "nothing to change")
    assert_fails(ressonance("show", "no-such-app", env=store), 1, "not found")
    assert_fails(ressonance("delete", "no-such-app", env=store), 1, "not found")
    assert_fails(ressonance("create", "--name", "y", "--id", app_id, env=store), 1, "exists")
    assert_fails(ressonance("list", "--server", "ftp://x", "--token", TOKEN), 2, "--server")
    assert_fails(ressonance("list", "--server", "http://127.0.0.1:1"), 2, "token")
    refused = ressonance("list", "--server", f"http://127.0.0.1:{free_port()}", "--token", TOKEN)
    assert_fails(refused, 1, "cannot reach")
    assert TOKEN not in refused.stderr + refused.stdout


def test_configured_apps_are_read_only_on_the_store(store: dict[str, str], tmp_path: Path) -> None:
    config = str(write_config(tmp_path / "apps.toml", [CONFIGURED], {}))
    listed = ok_json("list", "--config", config, env=store)["apps"]
    assert [(a["id"], a["source"], a["read_only"]) for a in listed] == [("5001", "config", True)]
    assert "read-only" in ressonance("list", "--config", config, env=store).stdout
    update = ressonance("update", "5001", "--name", "x", "--config", config, env=store)
    assert_fails(update, 1, "read-only")
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    assert_fails(ressonance("list", "--config", str(bad), env=store), 2, "unknown setting")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A node with a configured app and the management API."""
    tmp = tmp_path_factory.mktemp("node")
    settings = {"admin_port": free_port(), "admin_token": TOKEN}
    with run_server(tmp, apps=[CONFIGURED], settings=settings) as running:
        yield running


def on_node(
    node: RunningServer, *args: str, token: str = TOKEN
) -> subprocess.CompletedProcess[str]:
    return ressonance(*args, "--server", node.admin_url, env={"RESSONANCE_ADMIN_TOKEN": token})


@pytest.mark.asyncio
async def test_create_through_a_node_then_connect_with_the_new_key(node: RunningServer) -> None:
    result = on_node(node, "create", "--name", "Live", "--max-connections", "3", "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["source"] == "store" and created["max_connections"] == 3
    async with open_ws(node.ws_url(created["key"]), created, timeout=2) as client:
        assert client.socket_id  # pusher:connection_established
    listed = json.loads(on_node(node, "list", "--json").stdout)["apps"]
    assert {a["id"] for a in listed} >= {created["id"], "5001"}
    negative = on_node(node, "update", created["id"], "--max-presence-members", "-5")
    assert_fails(negative, 2, "max_presence_members")
    disabled = on_node(node, "disable", created["id"], "--json")
    assert json.loads(disabled.stdout)["enabled"] is False
    assert on_node(node, "delete", created["id"]).returncode == 0
    assert_fails(on_node(node, "show", created["id"]), 1, "not found")


def test_configured_app_is_read_only_through_a_node(node: RunningServer) -> None:
    shown = on_node(node, "show", "5001", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["read_only"] is True
    assert_fails(on_node(node, "update", "5001", "--name", "renamed"), 1, "read-only")
    assert_fails(on_node(node, "delete", "5001"), 1, "read-only")


def test_wrong_token_exits_1_without_printing_it(node: RunningServer) -> None:
    wrong = "wrong-token-0123456789abcdef"
    result = on_node(node, "list", token=wrong)
    assert_fails(result, 1, "token")
    assert wrong not in result.stderr + result.stdout
    argv = ressonance("list", "--server", node.admin_url, "--token", wrong)
    assert_fails(argv, 1, "token")
    assert wrong not in argv.stderr + argv.stdout


def test_postgresql_store(tmp_path: Path) -> None:
    with postgres_server(tmp_path) as pg:
        store = ["--app-store", pg.url]
        assert_fails(ressonance("list", *store), 2, "RESSONANCE_SECRET_KEY")
        env = {"RESSONANCE_SECRET_KEY": "k" * 40, "RESSONANCE_DATA_DIR": str(tmp_path / "d")}
        created = ok_json("create", "--name", "Shared", *store, env=env)
        listed = ok_json("list", *store, env=env)["apps"]
        assert [(a["id"], a["secret"]) for a in listed] == [(created["id"], created["secret"])]
        other = {**env, "RESSONANCE_SECRET_KEY": "o" * 40}  # another key opens no secret
        assert ok_json("list", *store, env=other) == {"apps": []}
    assert_fails(ressonance("list", *store, env=env), 1, "app store")  # it is stopped


@pytest.mark.asyncio
async def test_import_copies_a_toml_files_apps_into_the_store(
    store: dict[str, str], tmp_path: Path
) -> None:
    """The migration path of docs/apps.md: the same ids, keys, secrets and limits, then a node
    on that store (no TOML file) serves them; importing again creates nothing."""
    apps = [
        {"id": "7001", "key": "shop-key", "secret": "shop-secret", "max_connections": 9},
        {"id": "7002", "key": "chat-key", "secret": "chat-secret", "name": "Chat"},
    ]
    config = write_config(tmp_path / "old.toml", apps, {})
    first = ok_json("import", str(config), env=store)
    assert first == {
        "imported": [
            {"id": "7001", "status": "created", "message": ""},
            {"id": "7002", "status": "created", "message": ""},
        ]
    }
    again = ok_json("import", str(config), env=store)
    assert [i["status"] for i in again["imported"]] == ["skipped", "skipped"]
    shop = ok_json("show", "7001", env=store)
    assert (shop["key"], shop["secret"], shop["max_connections"]) == ("shop-key", "shop-secret", 9)
    assert shop["name"] == "app 7001" and shop["source"] == "store"
    assert ok_json("show", "7002", env=store)["name"] == "Chat"
    empty = write_config(tmp_path / "empty.toml", [], {"port": 6001})
    assert_fails(ressonance("import", str(empty), env=store), 2, "no [[apps]]")
    with run_server(tmp_path, apps=[], env=store) as server:  # the store alone, no file
        async with open_ws(server.ws_url("shop-key"), shop, timeout=2) as client:
            assert client.socket_id  # the same key works: no client needs a change
        assert "DEVELOPMENT app" not in server.log()  # the store has apps: no dev app


def test_create_through_a_node_prints_its_public_port(node: RunningServer) -> None:
    result = on_node(node, "create", "--name", "Env")
    assert result.returncode == 0, result.stderr
    assert f"PUSHER_PORT={node.port}\n" in result.stdout
    assert "PUSHER_HOST=127.0.0.1\n" in result.stdout


@pytest.mark.asyncio
async def test_an_app_created_on_the_store_works_at_once_on_a_running_node(
    store: dict[str, str], tmp_path: Path
) -> None:
    """``make run`` then ``ressonance apps create`` (on the store, no --server): the node reads
    the store's revision every second, so the new key connects within 2 s, and a disable made
    the same way closes that connection with 4003."""
    with run_server(tmp_path, apps=[], env=store) as server:
        assert "DEVELOPMENT app" in server.log()  # an empty store: the development app
        created = ok_json("create", "--name", "Fresh", env=store)
        started = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:
            while True:
                try:
                    client = await stack.enter_async_context(
                        open_ws(server.ws_url(created["key"]), created, timeout=1)
                    )
                    break
                except Exception:  # closed with 4001 until the node has read the store
                    assert time.monotonic() - started < 2.0, "the new app was not served in 2 s"
                    await asyncio.sleep(0.05)
            assert client.socket_id
            ok_json("disable", created["id"], env=store)
            code, _, _ = await client.expect_close(timeout=3)
            assert code == 4003


# apps webhooks, dead-letters, replay (docs/webhooks.md, "Managing webhooks") ---------------------
HOOK_SECRET = "Bearer hook-header-value-not-shown"


def test_webhooks_add_list_remove_on_a_sqlite_store(store: dict[str, str]) -> None:
    app = ok_json("create", "--name", "Hooked", env=store)
    assert ok_json("webhooks", "list", app["id"], env=store) == {"id": app["id"], "webhooks": []}
    added = ok_json(
        "webhooks", "add", app["id"], "--url", "https://hooks.example/a",
        "--event-types", "channel_occupied,member_added", "--starts-with", "private-",
        "--ends-with=-room", "--header", f"Authorization: {HOOK_SECRET}", env=store,
    )  # fmt: skip
    first = {
        "url": "https://hooks.example/a",
        "event_types": ["channel_occupied", "member_added"],
        "filter": {"channel_name_starts_with": "private-", "channel_name_ends_with": "-room"},
        "headers": {"Authorization": HOOK_SECRET},
    }
    assert added == {"id": app["id"], "webhooks": [first]}
    second: dict[str, Any] = {"url": "https://hooks.example/b", "event_types": ["cache_miss"]}
    add_b = ("webhooks", "add", app["id"], "--url", second["url"], "--event-types", "cache_miss")
    ok_json(*add_b, env=store)
    assert ok_json("show", app["id"], env=store)["webhooks"] == [first, second]  # in the app
    text = ressonance("webhooks", "list", app["id"], env=store)
    assert text.returncode == 0 and "Authorization" in text.stdout
    assert HOOK_SECRET not in text.stdout  # the table shows header names only
    assert "starts with 'private-'" in text.stdout and "https://hooks.example/b" in text.stdout
    bad = (
        (("--url", "ftp://x.example", "--event-types", "cache_miss"), "url"),
        (("--url", "https://x.example", "--event-types", "nope"), "event_types"),
        (("--url", "https://x.example", "--event-types", "cache_miss", "--header", "NoColon"),
         "header"),
    )  # fmt: skip
    for args, field in bad:
        assert_fails(ressonance("webhooks", "add", app["id"], *args, env=store), 2, field)
    assert_fails(ressonance("webhooks", "remove", app["id"], "--index", "3", env=store), 2, "index")
    unknown = ressonance(
        "webhooks", "remove", app["id"], "--url", "https://nope.example", env=store
    )
    assert_fails(unknown, 2, "url")
    assert_fails(ressonance("webhooks", "list", "nope", env=store), 1, "not found")
    removed = ok_json("webhooks", "remove", app["id"], "--index", "1", env=store)
    assert removed["webhooks"] == [second]
    removed = ok_json("webhooks", "remove", app["id"], "--url", second["url"], env=store)
    assert removed["webhooks"] == [] and ok_json("show", app["id"], env=store)["webhooks"] == []


def test_dead_letters_on_the_store_need_server_with_a_redis_broker(store: dict[str, str]) -> None:
    assert ok_json("dead-letters", env=store) == {"dead_letters": []}
    assert_fails(ressonance("replay", "msg_nope", env=store), 1, "No dead letter")
    assert_fails(ressonance("dead-letters", "--limit", "0", env=store), 2, "limit")
    redis = {**store, "RESSONANCE_BROKER": f"redis://127.0.0.1:{free_port()}"}
    for args in (("dead-letters",), ("replay", "msg_x")):
        assert_fails(ressonance(*args, env=redis), 1, "Redis", "--server")


@pytest.mark.asyncio
async def test_webhooks_dead_letters_and_replay_through_a_node(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = {
        "admin_port": free_port(),
        "webhooks_allow_private_targets": True,  # the receiver is on 127.0.0.1
    }
    env = {f"RESSONANCE_{name.upper()}": str(value).lower() for name, value in settings.items()}
    env["RESSONANCE_ADMIN_TOKEN"] = TOKEN  # no apps: no TOML file, the settings from the env
    with run_server(tmp_path, apps=[], settings=settings, env=env) as server:

        async def run(*args: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(on_node, server, *args)

        async def run_json(*args: str) -> Any:
            result = await run(*args, "--json")
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)

        app = await run_json("create", "--name", "Hooks")
        added = await run_json(
            "webhooks", "add", app["id"], "--url", receiver.url,
            "--event-types", "channel_occupied", "--header", f"Authorization: {HOOK_SECRET}",
        )  # fmt: skip
        assert [h["url"] for h in added["webhooks"]] == [receiver.url]
        receiver.status = 404  # a final answer: a dead letter at once
        await asyncio.sleep(1.5)  # every node reads the change within a second
        async with open_ws(server.ws_url(app["key"]), app, timeout=5) as client:
            await client.subscribe_ok("orders")
        deadline = time.monotonic() + 15
        while not (letters := (await run_json("dead-letters", "--app", app["id"]))["dead_letters"]):
            assert time.monotonic() < deadline, "no dead letter within 15 s"
            await asyncio.sleep(0.2)
        (letter,) = letters
        assert (letter["app_id"], letter["url"]) == (app["id"], receiver.url)
        assert letter["events"] == ["channel_occupied"] and letter["headers"] == ["Authorization"]
        table = await run("dead-letters")
        assert letter["id"] in table.stdout and "404" in table.stdout
        assert HOOK_SECRET not in table.stdout
        # the node's queue is its SQLite store: the store way reads the same dead letters
        on_store = {"RESSONANCE_DATA_DIR": str(tmp_path / f"data-{server.port}")}
        direct = await asyncio.to_thread(ok_json, "dead-letters", env=on_store)
        assert [x["id"] for x in direct["dead_letters"]] == [letter["id"]]

        receiver.status = 200
        before = len(receiver.requests)
        replayed = await run("replay", letter["id"])
        assert replayed.returncode == 0 and letter["id"] in replayed.stdout, replayed.stderr
        deadline = time.monotonic() + 10
        while not [r for r in receiver.requests[before:] if r.status == 200]:
            assert time.monotonic() < deadline, "the replay was not delivered within 10 s"
            await asyncio.sleep(0.05)
        delivered = next(r for r in receiver.requests[before:] if r.status == 200)
        assert delivered.header("webhook-id") == [letter["id"]]
        assert delivered.header("Authorization") == [HOOK_SECRET]
        assert (await run_json("dead-letters"))["dead_letters"] == []
        assert_fails(await run("replay", letter["id"]), 1, "No dead letter")
        removed = await run_json("webhooks", "remove", app["id"], "--url", receiver.url)
        assert removed["webhooks"] == []
    assert HOOK_SECRET not in server.log() and TOKEN not in server.log()
