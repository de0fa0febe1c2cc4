"""An app's webhooks and dead letters in the operator dashboard (the Settings tab's Webhooks and
Dead letters panels, over /api/v1/apps and /api/v1/dead-letters; docs/webhooks.md) in a real
headless Chromium against the real server, a real receiver on 127.0.0.1 and a real Pusher
WebSocket client (tests/support/wsclient.py).

Screenshots of each step land in $RESSONANCE_ARTIFACTS (else tests/dashboard/artifacts/).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.dashboard.conftest import ADMIN_TOKEN, LoopThread, Shots, admin_settings
from tests.dashboard.test_apps_ui import confirm, shoot, stored
from tests.dashboard.test_dashboard import login, wait_admin
from tests.support.receiver import Receiver
from tests.support.server import RunningServer, run_server
from tests.support.wsclient import open_ws

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
HEADER_VALUE = "Bearer dashboard-hook-token"


@pytest.fixture
def hook_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A node whose stored apps' webhooks may reach the receiver on 127.0.0.1."""
    settings = {**admin_settings(), "webhooks_allow_private_targets": True}
    with run_server(tmp_path, settings=settings) as server:
        yield server


@pytest.fixture
def hook_receiver(loop_thread: LoopThread) -> Iterator[Receiver]:
    receiver = Receiver()
    loop_thread.run(receiver.start())
    try:
        yield receiver
    finally:
        loop_thread.run(receiver.close())


def create_app(server: RunningServer, name: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{server.admin_url}/api/v1/apps",
        data=json.dumps({"name": name}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201
        created: dict[str, Any] = json.loads(response.read())
        return created


async def occupy(server: RunningServer, app: dict[str, Any], channel: str) -> None:
    async with open_ws(server.ws_url(app["key"]), app) as client:
        await client.subscribe_ok(channel)


def test_add_a_webhook_see_its_dead_letter_and_replay_it(
    page: Page,
    shots: Shots,
    hook_server: RunningServer,
    hook_receiver: Receiver,
    loop_thread: LoopThread,
) -> None:
    from playwright.sync_api import expect

    server, receiver = hook_server, hook_receiver
    wait_admin(server)
    app = create_app(server, "Hooked shop")
    login(page, server)
    page.goto(f"{server.admin_url}/#/apps/{app['id']}/settings")
    expect(page.locator("#webhooks-empty")).to_be_visible()
    expect(page.locator("#dead-letters-empty")).to_be_visible()

    # The form names what is missing before anything is sent.
    page.click("#webhook-add")
    expect(page.locator("#webhook-url-error")).to_have_text("Give an http:// or https:// URL.")
    page.fill("#webhook-url", receiver.url)
    page.click("#webhook-add")
    expect(page.locator("#webhook-events-error")).to_contain_text("at least one event type")
    page.check("#webhook-event-channel_occupied")
    expect(page.locator("#webhook-events-error")).to_be_hidden()
    page.check("#webhook-event-member_added")
    page.fill("#webhook-starts", "orders-")
    page.fill("#webhook-headers", f"Authorization: {HEADER_VALUE}\nX-Shop: 7")
    page.locator("#webhooks-panel").scroll_into_view_if_needed()
    shots.take("webhook-form", full_page=False)
    page.click("#webhook-add")

    row = page.locator(f"#webhooks-table tbody tr[data-url='{receiver.url}']")
    expect(row).to_be_visible()
    expect(row.locator("td").nth(1)).to_have_text("channel_occupiedmember_added")
    expect(row.locator("td").nth(2)).to_contain_text("starts with “orders-”")
    expect(row.locator("td").nth(3)).to_have_text("AuthorizationX-Shop")
    expect(page.locator("#webhooks-panel")).not_to_contain_text(HEADER_VALUE)  # names only
    expect(page.locator("#settings-notice")).to_contain_text("Added a webhook")
    record = stored(server, app["id"])
    assert record["webhooks"] == [
        {
            "url": receiver.url,
            "event_types": ["channel_occupied", "member_added"],
            "filter": {"channel_name_starts_with": "orders-"},
            "headers": {"Authorization": HEADER_VALUE, "X-Shop": "7"},
        }
    ], record
    page.locator("#webhooks-panel").scroll_into_view_if_needed()
    shots.take("webhook-listed", full_page=False)

    # The receiver refuses (404, a final answer): the POST becomes a dead letter.
    receiver.status = 404
    loop_thread.run(occupy(server, app, "orders-1"))
    letters = page.locator("#dead-letters-table tbody tr")
    deadline = time.monotonic() + 15
    while letters.count() == 0:
        assert time.monotonic() < deadline, "no dead letter listed within 15 s"
        page.click("#dead-letters-refresh")
        page.wait_for_timeout(300)
    expect(letters).to_have_count(1)
    letter_id = letters.first.get_attribute("data-letter")
    assert letter_id and letter_id.startswith("msg_"), letter_id
    expect(letters.first).to_contain_text("channel_occupied")
    expect(letters.first).to_contain_text(receiver.url)
    expect(letters.first.locator("td.error-text")).to_contain_text("404")
    page.locator("#dead-letters-panel").scroll_into_view_if_needed()
    shots.take("dead-letter", full_page=False)

    # Fixed: Replay posts it again with the same webhook-id.
    receiver.status = 200
    before = len(receiver.requests)
    page.click(f"#dead-letters-table [data-replay='{letter_id}']")
    expect(page.locator("#dead-letters-notice")).to_contain_text(f"Queued {letter_id} again")
    expect(page.locator("#dead-letters-empty")).to_be_visible()
    deadline = time.monotonic() + 10
    while not [r for r in receiver.requests[before:] if r.status == 200]:
        assert time.monotonic() < deadline, "the replay was not delivered within 10 s"
        time.sleep(0.05)
    delivered = next(r for r in receiver.requests[before:] if r.status == 200)
    assert delivered.header("webhook-id") == [letter_id]
    assert delivered.header("Authorization") == [HEADER_VALUE]
    page.locator("#dead-letters-panel").scroll_into_view_if_needed()
    shots.take("replayed", full_page=False)

    # Remove it (after a confirmation).
    page.click("#webhooks-table [data-remove-webhook='0']")
    confirm(page)
    expect(page.locator("#webhooks-empty")).to_be_visible()
    assert stored(server, app["id"])["webhooks"] == []
    shoot(shots, "removed")


def test_a_configured_apps_webhooks_are_read_only(
    page: Page, shots: Shots, hook_server: RunningServer
) -> None:
    from playwright.sync_api import expect

    wait_admin(hook_server)
    login(page, hook_server)
    page.goto(f"{hook_server.admin_url}/#/apps/1001/settings")
    expect(page.locator("#settings-readonly")).to_be_visible()
    expect(page.locator("#webhooks-empty")).to_be_visible()
    expect(page.locator("#webhook-form")).to_be_hidden()  # its webhooks live in the TOML file
    expect(page.locator("#webhook-url")).to_be_disabled()
    shoot(shots, "read-only")
