"""The operator dashboard in a real headless Chromium against the real server (its admin
listener), with real pusher-js clients (tests/e2e's Node runner) and, for the debug console, a
2-node cluster over a private redis-server. All traffic stays on 127.0.0.1.

Screenshots of each step land in $RESSONANCE_ARTIFACTS (else tests/dashboard/artifacts/).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.dashboard.conftest import ADMIN_TOKEN, TIMEOUT_MS, Shots, admin_settings
from tests.e2e.node_runner import LiveScenario
from tests.support.cluster import Cluster, run_cluster
from tests.support.server import RunningServer
from tests.support.services import redis_server

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCRIPT = str(Path(__file__).resolve().parent / "js" / "dashboard.mjs")
APP_ID = "1001"


# -- helpers ---------------------------------------------------------------------------------


def admin_get(server: RunningServer, path: str, token: str | None) -> tuple[int, Any]:
    """GET on the admin listener with an optional bearer token: (status, parsed JSON or text)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(f"{server.admin_url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


def wait_admin(server: RunningServer, timeout: float = 10) -> None:
    """Until the admin listener answers /health (it may start just after the public port)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, last = admin_get(server, "/health", None)
            if status == 200:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"admin listener not up within {timeout}s ({last!r}):\n{server.log()}")


def login(page: Page, server: RunningServer, token: str = ADMIN_TOKEN) -> None:
    """Sign in through the login form; the dashboard shows its first overview."""
    from playwright.sync_api import expect

    page.goto(f"{server.admin_url}/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"^[^?#]*/(#.*)?$"))
    expect(page.locator("[data-metric=connections]")).to_have_text(re.compile(r"^\d[\d,]*$"))


def metric(page: Page, name: str) -> int:
    text = page.locator(f"[data-metric={name}]").inner_text()
    return int(text.replace(",", ""))


def expect_metric(page: Page, name: str, value: int, timeout_ms: int = TIMEOUT_MS) -> None:
    from playwright.sync_api import expect

    expect(page.locator(f"[data-metric={name}]")).to_have_text(
        re.compile(rf"^{value:,}$".replace(",", ",?")), timeout=timeout_ms
    )


@contextlib.contextmanager
def scenario(server: RunningServer, name: str, *args: str) -> Iterator[LiveScenario]:
    live = LiveScenario(server, SCRIPT, name, *args)
    try:
        yield live
    finally:
        live.kill()


# -- (a) and (b): the token ------------------------------------------------------------------


def test_a_wrong_token_is_refused(page: Page, shots: Shots, admin_server: RunningServer) -> None:
    from playwright.sync_api import expect

    wait_admin(admin_server)
    # The API: no token and a wrong bearer are 401 JSON; the right one answers.
    for token in (None, "wrong-token-wrong-token", f"{ADMIN_TOKEN}x"):
        status, body = admin_get(admin_server, "/api/overview", token)
        assert status == 401, (token, status, body)
        assert isinstance(body, dict), body
        assert body.get("code") == 401, body
        assert body.get("error"), body
    status, body = admin_get(admin_server, "/api/overview", ADMIN_TOKEN)
    assert status == 200, (status, body)

    # The page: / without a session goes to the login form, which shows no error yet.
    page.goto(f"{admin_server.admin_url}/")
    assert page.url.split("?")[0].endswith("/login"), page.url
    expect(page.locator("#login-error")).to_be_hidden()
    page.fill("input[name=token]", "not-the-token-at-all")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_be_visible()
    assert "/login" in page.url, page.url
    shots.take("login-error")
    # Still signed out: the dashboard sends us back to the form, and no session cookie exists.
    assert not [c for c in page.context.cookies() if c["name"] == "ressonance_admin"]
    page.goto(f"{admin_server.admin_url}/")
    assert page.url.split("?")[0].endswith("/login"), page.url


def test_b_login_through_the_form_and_logout(
    page: Page, shots: Shots, admin_server: RunningServer
) -> None:
    from playwright.sync_api import expect

    wait_admin(admin_server)
    login(page, admin_server)
    cookies = [c for c in page.context.cookies() if c["name"] == "ressonance_admin"]
    assert cookies, page.context.cookies()
    assert cookies[0]["httpOnly"] is True, cookies
    assert cookies[0]["sameSite"] == "Strict", cookies
    # The header names the node and its version; the overview shows this one node.
    expect(page.locator("#node-id")).not_to_have_text("…")
    expect(page.locator("#node-version")).to_have_text(re.compile(r"\d+\.\d+"))
    expect_metric(page, "nodes", 1)
    expect(page.locator("#nodes-table tbody tr")).to_have_count(1)
    title = page.locator("[data-metric=messages-per-second]").get_attribute("title") or ""
    assert "in + out" in title, title
    shots.take("overview")

    page.click("#logout")
    page.wait_for_url(re.compile(r"/login"))
    assert not [c for c in page.context.cookies() if c["name"] == "ressonance_admin"]
    page.goto(f"{admin_server.admin_url}/")
    assert page.url.split("?")[0].endswith("/login"), page.url


# -- (c): the connection total follows pusher-js clients -------------------------------------


def test_c_connections_follow_pusher_js_clients(
    page: Page, shots: Shots, admin_server: RunningServer, tmp_path: Path
) -> None:
    wait_admin(admin_server)
    login(page, admin_server)
    expect_metric(page, "connections", 0)
    release = tmp_path / "release"
    with scenario(admin_server, "hold", "3", str(release)) as clients:
        clients.wait_for("connected")
        expect_metric(page, "connections", 3)
        shots.take("three-connected")
        # The apps view counts them too.
        page.goto(f"{admin_server.admin_url}/#/apps")
        row = page.locator(f"#apps-table tbody tr[data-app='{APP_ID}']")
        from playwright.sync_api import expect

        expect(row.locator("td").nth(3)).to_have_text("3")
        page.goto(f"{admin_server.admin_url}/#/overview")
        release.touch()
        result = clients.result(admin_server)
        assert result.get("ok") is True and result.get("left") == 3, result
    expect_metric(page, "connections", 0)
    shots.take("all-left")


# -- (d): the debug console shows an event published on the other node -----------------------


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[Cluster]:
    """n1 and n2 over a private redis-server, each with its own admin listener."""
    (tmp_path / "redis").mkdir()
    with (
        redis_server(tmp_path / "redis") as redis,
        run_cluster(tmp_path, redis.url, 2, settings=admin_settings, mesh_timeout=15) as cluster,
    ):
        for node in cluster.nodes:
            wait_admin(node)
        yield cluster


def debug_row(page: Page, marker: str) -> Any:
    return page.locator("#debug-table tbody tr", has_text=marker)


def test_d_debug_console_shows_an_event_published_on_the_other_node(
    page: Page, shots: Shots, two_nodes: Cluster
) -> None:
    from playwright.sync_api import expect

    n1 = two_nodes[0]
    login(page, n1)
    expect_metric(page, "nodes", 2, timeout_ms=15_000)
    expect(page.locator("#nodes-table tbody tr")).to_have_count(2)
    shots.take("cluster-overview")

    with page.expect_request(re.compile(rf"/api/apps/{APP_ID}/events\?")):
        page.goto(f"{n1.admin_url}/#/apps/{APP_ID}/debug")
    channel = f"orders-{secrets.token_hex(3)}"
    # Tenant data is text, never markup: this must show as typed and create no element.
    hostile = "<img src=x onerror=window.__pwned=1>"
    marker = f"m-{secrets.token_hex(4)}"
    data = {"marker": marker, "note": hostile}

    # `after=0` starts "from now": publish (through n2) until the console, fed by n1, shows it.
    row = debug_row(page, marker)
    deadline = time.monotonic() + 15
    while True:
        two_nodes.trigger(1, channel, "order-shipped", data)
        try:
            expect(row.first).to_be_visible(timeout=2_000)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    first = row.first
    assert first.get_attribute("data-kind") == "api_message"
    expect(first.locator("td").nth(1)).to_have_text("n2")
    expect(first.locator("td").nth(3)).to_have_text(channel)
    expect(first.locator("td").nth(4)).to_have_text("order-shipped")
    expect(first).to_contain_text(hostile)
    assert page.locator("#debug-table img").count() == 0
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("#debug-dropped")).to_have_text(re.compile(r"^\d+$"))
    shots.take("debug-console")

    # Filters: by channel, by kind (a checkbox), by free text; each hides the row, then shows it.
    kind_box = "#debug-kinds input[data-kind=api_message]"
    for selector, value, shown in (
        ("#debug-channel", "no-such-channel", False),
        ("#debug-channel", channel, True),
        (kind_box, False, False),
        (kind_box, True, True),
        ("#debug-text", "not-in-any-event", False),
        ("#debug-text", marker, True),
    ):
        if isinstance(value, bool):
            page.set_checked(selector, value)
        else:
            page.fill(selector, value)
        if shown:
            expect(row.first).to_be_visible()
        else:
            expect(row).to_have_count(0)

    # Pause: what arrives is held back (and counted), then shown on resume.
    page.click("#debug-pause")
    expect(page.locator("#debug-state")).to_have_text("paused")
    later = f"later-{secrets.token_hex(4)}"
    page.fill("#debug-text", "")
    two_nodes.trigger(1, channel, "order-shipped", {"marker": later})
    expect(page.locator("#debug-pending")).to_be_visible(timeout=TIMEOUT_MS)
    expect(debug_row(page, later)).to_have_count(0)
    page.click("#debug-pause")
    expect(debug_row(page, later).first).to_be_visible()
    shots.take("debug-filtered")


# -- (e): the event creator delivers to a pusher-js client -----------------------------------


def test_e_event_creator_delivers_to_pusher_js(
    page: Page, shots: Shots, admin_server: RunningServer
) -> None:
    from playwright.sync_api import expect

    wait_admin(admin_server)
    login(page, admin_server)
    channel = f"announcements-{secrets.token_hex(3)}"
    presence = f"presence-lobby-{secrets.token_hex(3)}"
    user = "<b>alice</b>"  # a user id is tenant data too: shown as text
    with scenario(admin_server, "receive", channel, "news", presence, user) as client:
        client.wait_for("subscribed")
        # The Apps view: click the app, its channel is listed with the client's subscription.
        page.goto(f"{admin_server.admin_url}/#/apps")
        page.click(f"#apps-table tbody tr[data-app='{APP_ID}'] td:nth-child(2)")
        page.wait_for_url(re.compile(rf"#/apps/{APP_ID}$"))
        listed = page.locator(f"#channels-table tbody tr[data-channel='{channel}']")
        expect(listed.locator("td").nth(1)).to_have_text("1")
        # The presence channel: one subscription, one user, listed by id among the members.
        lobby = page.locator(f"#channels-table tbody tr[data-channel='{presence}']")
        expect(lobby.locator("td").nth(2)).to_have_text("1")
        expect(page.locator("#members details", has_text=presence).locator("li")).to_have_text(
            [user]
        )
        assert page.locator("#members b").count() == 0
        shots.take("app-details")
        page.click("[data-tab=publish]")
        page.wait_for_url(re.compile(rf"#/apps/{APP_ID}/publish$"))
        page.fill("#publish-channel", channel)
        page.fill("#publish-event", "news")

        # Not JSON: refused in the page, nothing sent.
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if "/publish" in r.url else None)
        page.fill("#publish-data", '{"title": "unterminated')
        page.click("#publish-send")
        expect(page.locator("#publish-json-error")).to_be_visible()
        assert not requests, requests

        # A channel name the HTTP API refuses: the server's message is shown.
        page.fill("#publish-data", '{"title": "Hello", "n": 1}')
        page.fill("#publish-channel", "bad channel name!")
        with page.expect_response(re.compile(r"/publish$")) as refused:
            page.click("#publish-send")
        assert refused.value.status == 400, refused.value.status
        message = refused.value.json().get("error", "")
        expect(page.locator("#publish-result")).to_have_class(re.compile(r"\bbad\b"))
        expect(page.locator("#publish-result")).to_contain_text(message)
        shots.take("publish-refused")

        page.fill("#publish-channel", channel)
        page.click("#publish-send")
        expect(page.locator("#publish-result")).to_have_class(re.compile(r"\bok\b"))
        result = client.result(admin_server)
    assert result.get("ok") is True, result
    assert result["event"] == "news", result
    assert result["data"] == {"title": "Hello", "n": 1}, result
    shots.take("publish-sent")
