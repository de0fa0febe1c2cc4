"""Fixtures for the dashboard's browser tests: a real headless Chromium (Debian's ``chromium``,
driven by Playwright with ``executable_path``; nothing is downloaded), the real server with its
admin listener on a free loopback port, screenshots as test artifacts.

Chromium is found like the other test binaries (:func:`tests.support.services.require`:
``scripts/install-test-deps.sh`` installs it); Playwright is a test dependency
(``pip install -e .[test]``), so its absence is a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.support.server import RunningServer, free_port, run_server
from tests.support.services import require

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

T = TypeVar("T")

ADMIN_TOKEN = "dashboard-test-token-0123456789"
VIEWPORT = {"width": 1366, "height": 900}  # a laptop screen
TIMEOUT_MS = 10_000  # every Playwright wait (navigation, selector, expect)


def admin_settings(port: int | None = None) -> dict[str, Any]:
    """Settings that turn the admin listener on at a free loopback port with a known token."""
    return {"admin_port": port or free_port(), "admin_token": ADMIN_TOKEN}


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    return require("chromium")


# Per module, not per session: Playwright's sync API keeps an event loop running in this
# thread until it stops, and every asyncio test after it would then fail to start its own.
@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Browser]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_executable,
            headless=True,
            timeout=30_000,
            # Root in a container has no user namespaces for the sandbox; nothing leaves loopback.
            args=["--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where screenshots go: $RESSONANCE_ARTIFACTS, else tests/dashboard/artifacts/ (ignored)."""
    env = os.environ.get("RESSONANCE_ARTIFACTS")
    path = Path(env) if env else Path(__file__).resolve().parent / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Shots:
    """Screenshots of one test, named ``<test>-<step>.png``."""

    def __init__(self, page: Page, directory: Path, test_name: str) -> None:
        self.page = page
        self.directory = directory
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name)

    def take(self, step: str, full_page: bool = True) -> Path:
        path = self.directory / f"{self.prefix}-{step}.png"
        self.page.screenshot(path=str(path), full_page=full_page, timeout=TIMEOUT_MS)
        return path


@pytest.fixture
def page(browser: Browser, artifacts_dir: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (no cookies) and page; JavaScript errors fail the test; a
    screenshot of the last state is saved whatever the outcome."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        try:
            Shots(page, artifacts_dir, request.node.name).take("last")
        finally:
            context.close()


@pytest.fixture
def shots(page: Page, artifacts_dir: Path, request: pytest.FixtureRequest) -> Shots:
    return Shots(page, artifacts_dir, request.node.name)


@pytest.fixture
def admin_server(tmp_path: Path) -> Iterator[RunningServer]:
    """One real node (the default test apps) with its admin listener on."""
    with run_server(tmp_path, settings=admin_settings()) as server:
        yield server


class LoopThread:
    """An asyncio loop in a thread of its own, for the async test clients (tests/support/
    wsclient.py) next to Playwright's sync API, which keeps its own loop in the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop; the caller bounds its wait on the future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    try:
        yield runner
    finally:
        runner.close()
