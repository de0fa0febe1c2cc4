"""App management in the operator dashboard (the app's Settings tab and the Apps page's "New
app" form, over /api/v1/apps) in a real headless Chromium against the real server, with real
Pusher WebSocket clients (tests/support/wsclient.py) on the public port.

Screenshots of each step land in $RESSONANCE_ARTIFACTS (else tests/dashboard/artifacts/).
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.dashboard.conftest import ADMIN_TOKEN, LoopThread, Shots
from tests.dashboard.test_dashboard import admin_get, login, wait_admin
from tests.support.server import RunningServer
from tests.support.wsclient import open_ws

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CONFIGURED_ID = "1001"  # an app of the server's TOML file (tests/support/server.py)


def stored(server: RunningServer, app_id: str) -> dict[str, Any]:
    """The app as the management API answers it to a bearer token."""
    status, body = admin_get(server, f"/api/v1/apps/{app_id}", ADMIN_TOKEN)
    assert status == 200, (status, body)
    assert isinstance(body, dict), body
    return body


async def established(server: RunningServer, app: dict[str, Any]) -> str:
    """Connect with the app's key; the server's connection_established gives a socket id."""
    async with open_ws(server.ws_url(app["key"]), app) as client:
        return str(client.socket_id)


async def held_until_closed(
    server: RunningServer, app: dict[str, Any], ready: threading.Event
) -> int | None:
    """An established connection that waits for the server to close it: the close code."""
    async with open_ws(server.ws_url(app["key"]), app) as client:
        ready.set()
        code, _reason, _frames = await client.expect_close(timeout=30)
        return code


def shoot(shots: Shots, step: str, full_page: bool = True) -> None:
    """A screenshot from the top of the page (a full-page shot draws the sticky header where
    the page is scrolled to)."""
    shots.page.evaluate("window.scrollTo(0, 0)")
    shots.take(step, full_page)


def confirm(page: Page, typed: str | None = None) -> None:
    """Accept the dashboard's confirmation dialog (typing ``typed`` first when it asks)."""
    from playwright.sync_api import expect

    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    if typed is not None:
        expect(page.locator("#confirm-ok")).to_be_disabled()
        page.fill("#confirm-typed", typed)
    page.click("#confirm-ok")
    expect(dialog).to_be_hidden()


def test_manage_an_app_from_creation_to_deletion(
    page: Page, shots: Shots, admin_server: RunningServer, loop_thread: LoopThread
) -> None:
    from playwright.sync_api import expect

    server = admin_server
    wait_admin(server)
    login(page, server)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.admin_url)

    # Create: a name and two limits through the form.
    page.goto(f"{server.admin_url}/#/apps")
    page.click("#app-new")
    page.fill("#create-name", "Shop frontend")
    page.fill("#create-max_connections", "50")
    page.fill("#create-max_client_events_per_second", "5")
    page.uncheck("#create-client_events")
    shoot(shots, "create-form")
    page.click("#create-submit")
    page.wait_for_url(re.compile(r"#/apps/[^/]+/settings$"))
    created = page.locator("#settings-created")
    expect(created).to_be_visible()
    app_id = page.locator("#created-id").inner_text()
    key = page.locator("#created-key").inner_text()
    secret = page.locator("#created-secret").inner_text()
    assert app_id and key and secret, (app_id, key, secret)
    shoot(shots, "created")

    record = stored(server, app_id)
    assert record["name"] == "Shop frontend", record
    assert (record["key"], record["secret"]) == (key, secret), record
    assert record["max_connections"] == 50, record
    assert record["max_client_events_per_second"] == 5, record
    assert record["client_events"] is False, record
    assert record["read_only"] is False, record

    # It is listed, and its key opens a real connection on the public port.
    app = {"id": app_id, "key": key, "secret": secret}
    assert loop_thread.run(established(server, app))
    page.goto(f"{server.admin_url}/#/apps")
    row = page.locator(f"#apps-table tbody tr[data-app='{app_id}']")
    expect(row).to_contain_text("Shop frontend")
    expect(row.locator("td").nth(1)).to_have_text(key)

    # The connection blocks: the Laravel .env (copied with its secret) and pusher-js.
    page.goto(f"{server.admin_url}/#/apps/{app_id}/settings")
    env = page.locator("#snippet-env")
    expect(env).to_contain_text(f"PUSHER_APP_KEY={key}")
    expect(env).not_to_contain_text(secret)  # masked until "Show secrets"
    page.click("[data-copy=env]")
    expect(page.locator("#copy-status")).to_contain_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    for line in (
        "BROADCAST_CONNECTION=pusher",
        f"PUSHER_APP_ID={app_id}",
        f"PUSHER_APP_KEY={key}",
        f"PUSHER_APP_SECRET={secret}",
        f"PUSHER_HOST={server.host}",
        f"PUSHER_PORT={server.port}",
        "PUSHER_SCHEME=http",
        "PUSHER_APP_CLUSTER=mt1",
        'VITE_PUSHER_APP_KEY="${PUSHER_APP_KEY}"',
    ):
        assert line in copied.splitlines(), (line, copied)
    snippet = page.locator("#snippet-js").inner_text()
    assert f"new Pusher('{key}'" in snippet, snippet
    assert f"wsHost: '{server.host}'" in snippet and f"wsPort: {server.port}," in snippet, snippet
    assert "forceTLS: false" in snippet and "enabledTransports: ['ws', 'wss']" in snippet, snippet
    page.click("#secrets-toggle")
    expect(env).to_contain_text(f"PUSHER_APP_SECRET={secret}")
    shoot(shots, "settings")

    # Edit a limit: saved in the store.
    page.fill("#edit-max_connections", "75")
    page.click("#edit-save")
    expect(page.locator("#settings-notice")).to_contain_text("max_connections")
    assert stored(server, app_id)["max_connections"] == 75

    # A negative limit: the API's message under the field, nothing saved.
    page.fill("#edit-max_connections", "-1")
    page.click("#edit-save")
    error = page.locator("#edit-form [data-error-for=max_connections]")
    expect(error).to_be_visible()
    expect(error).to_have_text("max_connections must not be negative")
    expect(page.locator("#edit-max_connections")).to_have_attribute("aria-invalid", "true")
    shoot(shots, "validation-error")
    assert stored(server, app_id)["max_connections"] == 75
    page.click("#edit-reset")
    expect(error).to_be_hidden()

    # Rotate with a grace period of an hour: two keys, both working.
    page.select_option("#rotate-grace", "1h")
    page.click("#rotate-submit")
    expect(page.locator("#confirm-message")).to_contain_text("1 hour")
    shots.take("rotate-confirm", full_page=False)
    before = time.time()
    confirm(page)
    keys = page.locator("#keys-table tbody tr")
    expect(keys).to_have_count(2)
    expect(created).to_be_hidden()  # its credentials are the old pair now
    expect(page.locator(f"#keys-table tbody tr[data-key='{key}']")).to_contain_text("previous")
    record = stored(server, app_id)
    assert [k["key"] for k in record["keys"]][1:] == [key], record
    new_key = record["key"]
    assert new_key != key
    expires = record["keys"][1]["expires_at"]
    assert before + 3500 < expires < time.time() + 3700, record
    expect(keys.first).to_have_attribute("data-key", new_key)
    expect(env).to_contain_text(f"PUSHER_APP_KEY={new_key}")
    shoot(shots, "rotated")
    rotated = {"id": app_id, "key": new_key, "secret": record["secret"]}
    assert loop_thread.run(established(server, rotated))
    assert loop_thread.run(established(server, app))  # the old key, in its grace period

    # Disable (confirmed): an open connection of the app is closed with 4003.
    ready = threading.Event()
    closed = loop_thread.submit(held_until_closed(server, rotated, ready))
    assert ready.wait(10), "the connection was not established"
    page.click("#toggle-enabled")
    expect(page.locator("#confirm-title")).to_have_text(f"Disable app {app_id}?")
    confirm(page)
    assert closed.result(timeout=15) == 4003
    expect(page.locator("#settings-status")).to_have_text("disabled")
    assert stored(server, app_id)["enabled"] is False
    shoot(shots, "disabled")

    # Delete: the dialog wants the app id typed; then the app is gone.
    page.click("#delete-app")
    page.fill("#confirm-typed", "not-the-id")
    expect(page.locator("#confirm-ok")).to_be_disabled()
    shots.take("delete-confirm", full_page=False)
    page.fill("#confirm-typed", "")
    confirm(page, typed=app_id)
    page.wait_for_url(re.compile(r"#/apps$"))
    expect(page.locator("#apps-notice")).to_have_text(f"App {app_id} deleted.")
    expect(page.locator(f"#apps-table tbody tr[data-app='{app_id}']")).to_have_count(0)
    status, body = admin_get(server, f"/api/v1/apps/{app_id}", ADMIN_TOKEN)
    assert status == 404, (status, body)
    shoot(shots, "deleted")


def test_configured_app_is_read_only_and_errors_show_by_their_field(
    page: Page, shots: Shots, admin_server: RunningServer
) -> None:
    from playwright.sync_api import expect

    server = admin_server
    wait_admin(server)
    login(page, server)

    # A configured app: listed as such; its settings shown but every control disabled.
    page.goto(f"{server.admin_url}/#/apps")
    row = page.locator(f"#apps-table tbody tr[data-app='{CONFIGURED_ID}']")
    expect(row).to_contain_text("configuration file")
    page.goto(f"{server.admin_url}/#/apps/{CONFIGURED_ID}/settings")
    note = page.locator("#settings-readonly")
    expect(note).to_be_visible()
    expect(note).to_contain_text("From the configuration file: read-only")
    expect(page.locator("#edit-max_connections")).to_be_disabled()
    expect(page.locator("#edit-name")).to_be_disabled()
    for control in ("#edit-save", "#toggle-enabled", "#delete-app", "#rotate-submit"):
        expect(page.locator(control)).to_be_disabled()
    expect(page.locator("#keys-table tbody tr")).to_have_count(1)
    expect(page.locator("#snippet-env")).to_contain_text("PUSHER_APP_KEY=test-key")
    shoot(shots, "configured-read-only")

    # The API refuses a change of it too, and a cookie-authenticated change without the
    # browser's Origin (another site's request) is refused before it.
    response = page.request.patch(
        f"{server.admin_url}/api/v1/apps/{CONFIGURED_ID}",
        data='{"max_connections": 5}',
        headers={"Content-Type": "application/json", "Origin": server.admin_url},
    )
    assert response.status == 403, response.text()
    assert "read-only" in response.json()["error"]
    response = page.request.post(
        f"{server.admin_url}/api/v1/apps",
        data='{"name": "cross-site"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 403, response.text()
    assert "Cross-site" in response.json()["error"]

    # The create form: a negative limit and a missing name, each under its field.
    page.goto(f"{server.admin_url}/#/apps")
    page.click("#app-new")
    page.fill("#create-name", "Negative")
    page.click("#create-form details.more-limits summary")
    page.fill("#create-max_presence_members", "-3")
    page.click("#create-submit")
    error = page.locator("#create-form [data-error-for=max_presence_members]")
    expect(error).to_have_text("max_presence_members must not be negative")
    page.fill("#create-max_presence_members", "")
    page.fill("#create-name", "")
    page.click("#create-submit")
    expect(page.locator("#create-form [data-error-for=name]")).to_contain_text("name is required")
    expect(error).to_be_hidden()
    shoot(shots, "create-validation-error")
    status, body = admin_get(server, "/api/v1/apps", ADMIN_TOKEN)
    assert status == 200, body
    assert all(not a["name"] or a["name"] != "Negative" for a in body["apps"]), body
